"""``python -m example_app``: upstream, server1 and server2 in one process and one event loop."""

from example_app.cohost import main

if __name__ == "__main__":
    main()
