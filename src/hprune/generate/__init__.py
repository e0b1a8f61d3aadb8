"""Generation: prompts -> images, in memory or into a folder."""
