"""CLI subcommands: one module each (NAME, HELP, add_arguments, run)."""


def add_overwrite(p) -> None:
    """--overwrite for every command that writes an --out (see minislm.outputs)."""
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out that minislm did not write (its files "
                        "may be replaced or deleted)")
