"""`fastseg download`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import user_errors
from cli.options import verbose_option

# Neither module imports torch at the top (download: the standard library; sbd: numpy), so the
# defaults are shown in `--help` at once.
from fastseg.data.download import VOC_MD5, VOC_URLS
from fastseg.data.sbd import SBD_MD5, SBD_URLS


@click.command(context_settings={"show_default": True})
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data"),
    help="Folder to hold VOCdevkit/VOC2012 (pass it to train as --data).",
)
@click.option(
    "--url",
    "urls",
    multiple=True,
    default=VOC_URLS,
    show_default="the official host, then 2 mirrors",
    help="URL of the tar; repeat it to give fallbacks, tried in order.",
)
@click.option("--md5", default=VOC_MD5, help="Expected MD5 of the tar (for a mirror of another file).")
@click.option("--sbd", is_flag=True, help="Also fetch SBD (1.4 GB) and build the 10,582-id trainaug list.")
@click.option("--sbd-url", "sbd_urls", multiple=True, default=SBD_URLS, show_default="Berkeley's host")
@click.option("--sbd-md5", default=SBD_MD5, help="Expected MD5 of benchmark.tgz.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@verbose_option
@user_errors
def command(
    root: Path,
    urls: tuple[str, ...],
    md5: str,
    sbd: bool,
    sbd_urls: tuple[str, ...],
    sbd_md5: str,
    quiet: bool,
) -> None:
    """Download VOCtrainval_11-May-2012.tar (2 GB; resumable), check its MD5 and extract it safely.

    Offline? Put the tar in ROOT yourself and run this again: it is verified and extracted, and
    no network is used. Data already extracted in ROOT is left alone."""
    from fastseg.data.download import download_voc

    folder = download_voc(root, urls=urls, md5=md5, progress=not quiet, log=click.echo)
    click.echo(f"VOC 2012 ready in {folder}: fastseg train --data {root}")
    if sbd:
        from fastseg.data.sbd import download_sbd
        from fastseg.data.voc import VOCFolder

        ids = download_sbd(
            root, VOCFolder(folder), urls=sbd_urls, md5=sbd_md5, progress=not quiet, log=click.echo
        )
        click.echo(f"trainaug ready ({len(ids)} ids): fastseg train --data {root} --train-set trainaug")
