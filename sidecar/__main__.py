"""`python -m sidecar` is `trackgate`."""

from sidecar.cli import main

raise SystemExit(main())
