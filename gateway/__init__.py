"""CallMyWay intake gateway: every customer contact becomes a tracked incident in one live queue."""
