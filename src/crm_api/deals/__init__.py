"""Deals: opportunities moving through a pipeline's stages."""
