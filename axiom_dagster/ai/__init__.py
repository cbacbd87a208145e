"""AI tag standardization clients and cache (room for it; nothing here yet).
Imports config, dicom and store only.
"""
