"""A render from request to file: the job, the one resolver, the run level by level, the finishing,
the fast method, the work folder's lifecycle, snapshots and batch files.  Imports the floors below.
"""
