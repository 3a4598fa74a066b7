"""`python -m bench.peers.client MODULE ROLE ...`: a system's client process (see _common)."""

from bench.peers._common import main

if __name__ == "__main__":
    main()
