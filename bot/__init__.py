"""hookbot: a GitHub webhook bot server that runs as a container or as an AWS Lambda function behind SNS."""

__version__ = "0.1.0"
USER_AGENT = f"hookbot/{__version__} (+https://github.com/hookbot/hookbot)"
