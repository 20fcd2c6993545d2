"""The Celery application, built from settings at start-up."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from switchyard.settings import Settings


def create_app(settings: Settings) -> Celery:
    app = Celery("switchyard", set_as_current=True)
    app.conf.update(celeryconfig.build(settings))
    return app
