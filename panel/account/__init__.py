"""The signed-in user's own account: sessions, log out everywhere, password."""
