"""Which smtpd services consult the check_sasl_access map, from crafted postconf, postconf -M and -P output."""

from __future__ import annotations

from bot.mail.restrictions import Blocking, parse_postconf

MAP = "/etc/postfix/sasl_access"
MASTER = """\
smtp       inet  n       -       y       -       -       smtpd
submission inet  n       -       y       -       -       smtpd -o syslog_name=postfix/submission
smtps      inet  n       -       y       -       -       smtpd -o smtpd_tls_wrappermode=yes
pickup     unix  n       -       y       60      1       pickup
smtp       unix  -       -       y       -       -       smtp
"""
# Debian's defaults: no restriction list names the map, no service takes logins.
DEFAULTS = """\
smtpd_client_restrictions =
smtpd_recipient_restrictions =
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination
smtpd_sasl_auth_enable = no
"""


def report(main: str, overrides: str, master: str = MASTER) -> Blocking:
    """Return the report for postconf output as the server's one command prints it."""
    text = f"{DEFAULTS}{main}#mailfix: postconf -M\n{master}#mailfix: postconf -P\n{overrides}"
    return parse_postconf(MAP, text)


def consulting(blocking: Blocking) -> dict[str, tuple[bool, bool]]:
    return {s.name: (s.sasl, s.consults) for s in blocking.services}


def test_a_restriction_set_only_in_master_cf_for_submission_counts_and_no_warning_is_given():
    blocking = report(
        "",
        f"""\
submission/inet/smtpd_sasl_auth_enable = yes
submission/inet/smtpd_recipient_restrictions = check_sasl_access hash:{MAP}, permit_sasl_authenticated, reject
smtps/inet/smtpd_sasl_auth_enable = yes
smtps/inet/smtpd_recipient_restrictions = check_sasl_access,hash:{MAP},permit_sasl_authenticated,reject
""",
    )
    assert consulting(blocking) == {
        "smtp/inet": (False, False),
        "submission/inet": (True, True),
        "smtps/inet": (True, True),
    }
    assert blocking.kind == "hash"
    assert blocking.warning == ""
    assert blocking.describe() == (
        f"check_sasl_access hash:{MAP} is consulted by submission/inet, smtps/inet;"
        " not by smtp/inet (takes no SASL logins)"
    )


def test_a_dollar_reference_in_an_override_is_resolved_in_every_spelling():
    blocking = report(
        f"mua_recipient_restrictions = check_sasl_access lmdb:{MAP}, permit_sasl_authenticated, reject\n"
        "mua_sasl = yes\n"
        "mua_client_restrictions = $mua_recipient_restrictions\n",
        """\
submission/inet/smtpd_sasl_auth_enable = $mua_sasl
submission/inet/smtpd_recipient_restrictions = $mua_recipient_restrictions
smtps/inet/smtpd_sasl_auth_enable = ${mua_sasl}
smtps/inet/smtpd_client_restrictions = $(mua_client_restrictions)
""",
    )
    assert consulting(blocking)["submission/inet"] == (True, True)
    assert consulting(blocking)["smtps/inet"] == (True, True)
    assert blocking.kind == "lmdb"  # what postmap must build
    assert blocking.warning == ""


def test_an_override_may_name_a_parameter_that_other_overrides_change():
    """`$name` resolves in the service's own settings: its -o value wins over main.cf's."""
    blocking = report(
        "smtpd_recipient_restrictions = $my_list\nmy_list = permit_sasl_authenticated, reject\n",
        f"""\
submission/inet/smtpd_sasl_auth_enable = yes
submission/inet/my_list = check_sasl_access hash:{MAP}, permit_sasl_authenticated, reject
smtps/inet/smtpd_sasl_auth_enable = yes
""",
    )
    assert consulting(blocking)["submission/inet"] == (True, True)
    assert consulting(blocking)["smtps/inet"] == (True, False)
    assert "smtps/inet accept SASL logins but do not consult" in blocking.warning


def test_comments_continuation_lines_and_junk_in_the_output_are_read_like_postconf_means_them():
    blocking = report(
        f"""\
# a comment line
smtpd_recipient_restrictions = permit_mynetworks,
    check_sasl_access hash:{MAP},
\tpermit_sasl_authenticated, reject_unauth_destination
postconf: warning: /etc/postfix/main.cf: unused parameter: foo=bar
smtpd_sasl_auth_enable = yes

""",
        """\
# submission/inet/smtpd_recipient_restrictions = reject
smtp/inet/smtpd_sasl_auth_enable =
    no
""",
        master=MASTER.replace("-o smtpd_tls_wrappermode=yes", "\n  -o smtpd_tls_wrappermode=yes"),
    )
    assert consulting(blocking) == {
        "smtp/inet": (False, True),  # the folded override turns SASL off there
        "submission/inet": (True, True),  # the commented-out override does not apply
        "smtps/inet": (True, True),  # its entry folded over two lines is still an smtpd service
    }
    assert blocking.warning == ""


def test_a_map_named_only_in_another_service_leaves_the_service_that_takes_logins_unprotected():
    blocking = report(
        "smtpd_sasl_auth_enable = yes\n",
        f"smtps/inet/smtpd_recipient_restrictions = check_sasl_access hash:{MAP}, permit_sasl_authenticated\n",
    )
    assert consulting(blocking) == {
        "smtp/inet": (True, False),
        "submission/inet": (True, False),
        "smtps/inet": (True, True),
    }
    assert blocking.unprotected == ("smtp/inet", "submission/inet")
    assert blocking.warning == (
        f"smtp/inet, submission/inet accept SASL logins but do not consult check_sasl_access hash:{MAP}:"
        " a blocked login can still send through them"
    )
    assert blocking.describe().startswith(f"check_sasl_access hash:{MAP} is consulted by smtps/inet; not by smtp/inet")


def test_a_look_alike_map_or_restriction_name_is_not_the_map():
    for restriction in (
        f"check_sasl_access hash:{MAP}_old",
        f"check_sasl_access hash:{MAP}.db",
        f"check_sasl_access hash:/etc/postfix/other/{MAP}",
        f"check_sasl_access_x hash:{MAP}",
        f"check_sender_access hash:{MAP}",
        f"check_sasl_access hash:{MAP.upper()}",
        f"check_sasl_access {MAP}",  # no table type: Postfix would refuse it
        f"hash:{MAP}",
    ):
        blocking = report(
            f"smtpd_sasl_auth_enable = yes\nsmtpd_recipient_restrictions = {restriction}, permit_sasl_authenticated\n",
            "",
        )
        assert not any(s.consults for s in blocking.services), restriction
        assert blocking.warning, restriction


def test_a_map_listed_after_permit_sasl_authenticated_is_never_reached_by_a_login():
    blocking = report(
        "smtpd_sasl_auth_enable = yes\n"
        f"smtpd_recipient_restrictions = permit_sasl_authenticated, check_sasl_access hash:{MAP}, reject\n"
        f"smtpd_relay_restrictions = permit, check_sasl_access hash:{MAP}\n",
        "",
    )
    assert not any(s.consults for s in blocking.services)


def test_main_cf_alone_protects_every_service_unless_one_overrides_the_list_without_it():
    blocking = report(
        "smtpd_sasl_auth_enable = yes\n"
        f"smtpd_recipient_restrictions = check_sasl_access hash:{MAP}, permit_sasl_authenticated\n",
        "submission/inet/smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n"
        "smtp/inet/smtpd_sasl_auth_enable = no\n",
    )
    assert consulting(blocking) == {
        "smtp/inet": (False, True),
        "submission/inet": (True, False),
        "smtps/inet": (True, True),
    }
    assert blocking.unprotected == ("submission/inet",)


def test_a_restriction_class_and_a_proxied_table_are_followed():
    blocking = report(
        "smtpd_sasl_auth_enable = yes\n"
        "smtpd_restriction_classes = blocked_logins\n"
        f"blocked_logins = check_sasl_access proxy:hash:{MAP}\n"
        "smtpd_recipient_restrictions = blocked_logins, permit_sasl_authenticated, reject\n",
        "",
    )
    assert all(s.consults for s in blocking.services)
    assert blocking.kind == "hash"


def test_only_smtpd_services_count_and_a_loop_of_references_ends():
    blocking = report(
        "smtpd_sasl_auth_enable = yes\nsmtpd_recipient_restrictions = $a\na = $b\nb = $a\n",
        "",
        master="pickup     unix  n       -       y       60      1       pickup\n"
        "smtp       inet  n       -       y       -       1       postscreen\n"
        "smtpd      pass  -       -       y       -       -       smtpd\n"
        "relay      unix  -       -       y       -       -       smtp -o smtpd_sasl_auth_enable=yes\n",
    )
    assert consulting(blocking) == {"smtpd/pass": (True, False)}
    assert blocking.unprotected == ("smtpd/pass",)


def test_no_service_taking_logins_means_no_warning_and_unreadable_settings_say_so():
    blocking = report("", "")
    assert blocking.warning == "" and not any(s.sasl for s in blocking.services)
    failed = Blocking(path=MAP, kind="hash", error="postconf exited with status 1: fatal: open /etc/postfix/main.cf")
    assert failed.warning.startswith(f"could not tell whether Postfix consults check_sasl_access hash:{MAP}")
    assert failed.describe().startswith("Warning: could not tell")


def test_a_master_cf_with_no_smtpd_service_is_a_warning_not_silence():
    blocking = report("smtpd_sasl_auth_enable = yes\n", "", master="pickup unix n - y 60 1 pickup\n")
    assert blocking.services == ()
    assert blocking.warning.startswith("postconf -M lists no smtpd service: could not tell")
    assert "Warning: postconf -M lists no smtpd service" in blocking.describe()
