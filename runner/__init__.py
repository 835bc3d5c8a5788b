"""Everything that executes: task store, queue, pipeline, Docker sandbox, cache, mirrors."""
