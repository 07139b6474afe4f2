"""Running the pipeline: the stages that turn a shard's manifest rows into samples, and Ray, which runs them."""
