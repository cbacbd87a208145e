"""AI tag standardization: OpenAI / Vertex AI clients, prompts, the answer cache and cost guard.
Imports config, dicom, store and crosswalks (its miss table) only.
"""
