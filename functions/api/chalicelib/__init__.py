"""The API's own modules (Chalice packages this folder with app.py)."""
