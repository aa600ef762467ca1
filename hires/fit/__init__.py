"""Fitting the feed-forward network to a painting (``hires style fit``) and running it as a job.
Imports the floors below hires.api.
"""
