"""Imported by the worker pools' fork server: dlib's detector and shape predictors loaded once, before any
worker forks, so every worker starts with them (shared, copy-on-write) rather than reading ~110 MB itself."""

from facekeeper.engine import models

models.preload()
