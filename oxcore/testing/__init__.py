"""oxcore's conformance kit (pytest plugin ``--oxcore-backend`` / ``--oxcore-format``)."""
