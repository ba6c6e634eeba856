"""``python -m ssp_detect`` (also under torchrun) runs the ``ssp`` command line."""

from ssp_detect.cli import main

raise SystemExit(main())
