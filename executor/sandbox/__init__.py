"""Code that runs inside the jail: the worker supervisor, the program host and the test runner."""
