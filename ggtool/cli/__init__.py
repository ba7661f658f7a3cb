"""The command-line shell: each command parses options, calls one library function, and
hands its result to the output layer (`output.py`)."""
