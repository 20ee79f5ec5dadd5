"""One flask-restx namespace per resource; business logic lives in ``octoprov``."""
