"""hookbot's built-in plugins, each registered in the ``hookbot.handlers`` entry-point group."""
