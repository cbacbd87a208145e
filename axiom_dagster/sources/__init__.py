"""Remote sources that retrieve into the landing zone (room for DICOMweb, DIMSE, archives).
May import every package before it, pipeline included.
"""
