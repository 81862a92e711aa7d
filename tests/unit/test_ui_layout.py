"""serving/ui/layout.py: the page shell and the declaration links."""
from __future__ import annotations

from serving.ui.layout import declaration_link, page


def test_the_page_names_the_champion_unless_told_not_to():
    assert "champion customs-risk v3" in page("t", "", "3").body.decode()
    assert "(none loaded)" in page("t", "", None).body.decode()
    hidden = page("Key needed", "", None, status=401, names_champion=False)
    assert hidden.status_code == 401 and "champion" not in hidden.body.decode()


def test_a_declaration_link_carries_the_id_only_encoded_and_escaped():
    assert declaration_link('A 1&"b"') == '<a href="/ui/declaration?id=A+1%26%22b%22">A 1&amp;&quot;b&quot;</a>'
