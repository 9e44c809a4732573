"""Problem adapters that compose environments, scorers and the LLM gateway for search."""
