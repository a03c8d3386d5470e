"""Stages: the Ray wiring of extract, train, convert, evaluate and the whole pipeline."""
