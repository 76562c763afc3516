"""Admin page for panel accounts: invite, role, TOTP reset, disable/enable."""
