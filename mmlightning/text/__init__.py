"""Text side: corpora and their encoded cache, the skip-gram LightningModule and its data, export."""
