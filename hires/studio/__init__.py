"""``hires serve``: the studio's app, its queue, data folder, limits, previews and job worker.
Imports the floors below, hires.api and hires.fit.
"""
