"""``python -m oneinbox_emulator demo|emulator``: the commands of ``python -m oneinbox_asgi``."""

from .cli import main

if __name__ == "__main__":
    main(package="oneinbox_emulator")
