"""The main job: the table of cached stages, `reproduce`, and the release of the vectors."""
