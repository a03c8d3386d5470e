"""Rendering a swapped face back into its frame: colour match, mask, paste."""
