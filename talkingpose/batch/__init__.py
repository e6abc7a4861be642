"""Many videos on Ray: `batch` renders a job list with Ray actors as workers, `evaluate` runs the paper's
self-identity protocol on a folder of videos through it.

    manifest  the job list (CSV or JSON Lines), checked row by row; the options all jobs share
    worker    the Ray actor: networks loaded once, jobs advanced a frame at a time, resumable
    driver    Ray start-up or joining a cluster, handing out jobs, skipping finished ones, summary.json
    evaluate  dataset -> jobs -> renders -> metrics per video (Ray tasks) -> metrics.json / metrics.csv

Nothing here imports Ray or torch at import time; only running a batch needs Ray.
"""
