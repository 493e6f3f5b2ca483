"""``python -m lse.launch``: the user's command; the launcher lives in :mod:`lse.runners.launch`."""

from lse.runners.launch import main

if __name__ == "__main__":
    main()
