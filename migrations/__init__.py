"""Alembic history of the qfleet store (ships inside the wheel; run with ``qfleet db``)."""
