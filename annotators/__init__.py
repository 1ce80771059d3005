"""The one package that knows Argilla (push selected batches, pull verified labels)."""
