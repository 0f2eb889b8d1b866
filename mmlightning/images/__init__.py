"""Image side: image sources (selection of images per word), writing and reading WebDataset shards, preprocessing."""
