"""A plugin package for the tests: two layer kinds registered through the normdsl.kinds entry point."""
