"""Command-line entry points of this package; `lgc.cli.build_parser` calls `add_parsers`."""


def add_parsers(sub) -> None:
    """Add this package's subcommands to the `lgc` parser (none yet)."""
