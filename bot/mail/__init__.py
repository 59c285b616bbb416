"""Everything that talks to a mail server over SSH: executor, Postfix/Dovecot operations, parsing, passwords."""
