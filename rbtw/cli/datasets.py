"""rbtw data list, download and import: the data sets in the cache."""

import click

from rbtw.cli.app import main
from rbtw.cli.progress import ByteBars

_DATA_DIR_HELP = "cache directory for data sets (default: $RBTW_DATA, else ~/.cache/rbtw)"


def _data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        help=_DATA_DIR_HELP)(f)


def _data_dir(ctx, data_dir):
    """The subcommand's --data-dir, else the group's (either beats $RBTW_DATA)."""
    return data_dir or ctx.find_object(dict).get("data_dir")


@main.group("data")
@_data_dir_option
@click.pass_context
def data_group(ctx, data_dir):
    """Data sets: list what is present, download canonical files, import local copies."""
    ctx.ensure_object(dict)["data_dir"] = data_dir


@data_group.command("list")
@_data_dir_option
@click.option("--recheck", is_flag=True,
              help="also match the stored files against the registry's known copies again, "
                   "and check the prepared data")
@click.pass_context
def data_list(ctx, data_dir, recheck):
    """Show each data set, where it is, and whether it is present and checked.

    The stored files are hashed and compared with what their manifest recorded when they were
    stored: a file changed since is shown as damaged, with how to get it again.
    """
    from rbtw.data import dataset_rows, resolve_data_dir

    data_dir = _data_dir(ctx, data_dir)
    click.echo(f"data directory: {resolve_data_dir(data_dir)}")
    for row in dataset_rows(data_dir, recheck=recheck):
        click.echo(f"{row['name']:<9} {row['status']:<13} {row['where']}")
        click.echo(f"{'':<9} {row['note']}")


@data_group.command("download")
@click.argument("name")
@click.option("--mirror", default=None, metavar="URL",
              help="fetch <URL>/<source>/<file> instead of the canonical URLs "
                   "(default: $RBTW_MIRROR)")
@_data_dir_option
@click.pass_context
def data_download(ctx, name, mirror, data_dir):
    """Fetch NAME's canonical files, check size and checksum, store them in the cache.

    An interrupted transfer is resumed by running the command again.
    """
    from rbtw.data import download

    with ByteBars() as bars:
        sdir = download(name, _data_dir(ctx, data_dir), mirror=mirror, echo=click.echo, progress=bars)
    click.echo(f"{name}: ready in {sdir}")


@data_group.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=str))
@_data_dir_option
@click.pass_context
def data_import(ctx, name, path, data_dir):
    """Copy a local copy of NAME (a file, or a directory holding its files) into the cache."""
    from rbtw.data import import_path

    sdir = import_path(name, path, _data_dir(ctx, data_dir), echo=click.echo)
    click.echo(f"{name}: ready in {sdir}")


if __name__ == "__main__":
    main()
