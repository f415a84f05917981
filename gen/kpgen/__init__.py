"""kpgen: generate, build and boot-test kpatch-style live patch modules for Linux."""

__version__ = "0.1.0"
