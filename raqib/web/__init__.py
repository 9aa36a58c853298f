"""The web app and HTTP API (`raqib run` serves it beside the poller; `raqib web` alone)."""
