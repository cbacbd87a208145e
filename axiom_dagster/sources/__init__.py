"""Remote sources (DICOMweb, DIMSE, filesystem archives): query, retrieve into the landing zone,
poll planning and day-by-day backfill. May import every package before it, pipeline included.
"""
