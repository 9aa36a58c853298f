"""Arabic normalization, clitics and topic tagging, on real text and on the hard negatives."""

from __future__ import annotations

import pytest

from monitor.arabic import forms, normalize, query_key, tokens
from monitor.config import load_config
from monitor.language import detect_language
from monitor.topics import build_tagger
from tests.corpus import seed_text, topical_docs


@pytest.fixture(scope="module")
def tagger():
    return build_tagger(load_config("config").topics)


@pytest.mark.parametrize("raw, expected", [
    ("الأَطْلَسِيّ", "الاطلسي"),          # harakat and shadda
    ("الأطلـــسي", "الاطلسي"),            # tatweel
    ("إسرائيل آسيا أحمد ٱلله", "اسرائيل اسيا احمد الله"),  # alef forms
    ("مصطفى", "مصطفي"),                  # alef maqsura
    ("مذكرة", "مذكره"),                  # taa marbuta
    ("١٩٩٤ ۱۹۹۴", "1994 1994"),          # Arabic-Indic and Persian digits
    ("NATO", "nato"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_punctuation_splits_tokens():
    assert tokens("الناتو،كورسك؛ بودابست؟") == ("الناتو", "كورسك", "بودابست")


@pytest.mark.parametrize("word", ["للناتو", "بالناتو", "والناتو", "الناتو", "ناتو", "وللناتو", "فالناتو"])
def test_clitic_forms_reach_the_query_key(word):
    assert query_key("الناتو") in forms(normalize(word))


@pytest.mark.parametrize("word", ["وكورسك", "بكورسك", "لكورسك", "كورسك"])
def test_kursk_with_clitics(word):
    assert query_key("كورسك") in forms(normalize(word))


@pytest.mark.parametrize("word", ["سيناتور", "الناتج", "ناتاشا"])
def test_lookalikes_do_not_reach_nato(word):
    assert query_key("الناتو") not in forms(normalize(word))


@pytest.mark.parametrize("word, query", [("كمال", "المال"), ("كامن", "الأمن"), ("كامل", "الأمل"),
                                         ("كانت", "أنت"), ("وكمال", "المال")])
def test_a_bare_kaf_does_not_make_a_short_word_another(word, query):
    assert query_key(query) not in forms(normalize(word))


@pytest.mark.parametrize("word, query", [("بمصر", "مصر"), ("لغزة", "غزة"), ("كالمال", "المال"),
                                         ("كمركز", "المركز"), ("بالأمن", "الأمن")])
def test_prepositions_before_short_stems_still_read(word, query):
    assert query_key(query) in forms(normalize(word))


def test_underscores_split_words():
    assert tokens("#قمة_لاهاي و#شمال_الأطلسي") == ("قمه", "لاهاي", "و", "شمال", "الاطلسي")


def test_seed_article_tags_all_three_topics(tagger):
    text = seed_text()
    topics, matches = tagger.tag(text)
    assert set(topics) == {"nato", "kursk", "budapest_memorandum"}
    for m in matches:
        assert text[m.start:m.end] == m.text
    texts = {m.text for m in matches}
    assert "لمذكرة بودابست" in texts          # clitic ل on the memorandum
    assert "حلف شمال الأطلنطي" in texts        # the الأطلنطي spelling
    assert "الناتو" in texts
    # "الاتحاد الأوروبي والأطلنطي" is Euro-Atlantic integration, not NATO
    euro = text.index("الأوروبي والأطلنطي")
    assert not any(m.start <= euro + 10 < m.end for m in matches)


@pytest.mark.parametrize("text, topic", [
    ("اجتماع للناتو في بروكسل", "nato"),
    ("صرح بالناتو", "nato"),
    ("والناتو يرد", "nato"),
    ("القتال في وكورسك", "kursk"),
    ("معارك بكورسك", "kursk"),
    ("التجربة المريرة لمذكرة بودابست", "budapest_memorandum"),
    ("Nato summit", "nato"),
    ("the Budapest Memorandum of 1994", "budapest_memorandum"),
    ("fighting in Kursk region", "kursk"),
    ("بودابست عام 1994 والضمانات الأمنية لأوكرانيا مقابل الترسانة النووية", "budapest_memorandum"),
    ("قال الأمين العام للحلف الأطلسي", "nato"),
    ("حلف #شمال_الأطلسي", "nato"),                # hashtags: _ and # separate words
    ("#شمال_الأطلسي", "nato"),
    ("قمة #حلف_شمال_الأطلسي في لاهاي", "nato"),
    ("كالناتو", "nato"),                          # ك before the article is a proclitic
    ("#مذكرة_بودابست", "budapest_memorandum"),
])
def test_positive_mentions(tagger, text, topic):
    topics, matches = tagger.tag(text)
    assert topic in topics
    assert all(text[m.start:m.end] == m.text for m in matches)


@pytest.mark.parametrize("text", [
    "عبرت اللوحة المحيط الأطلسي نحو نيويورك",
    "زار الرئيس بودابست أمس",
    "انضمت الدولة إلى اتفاقية بودابست لمكافحة الجرائم الإلكترونية",
    "سجل في كورس لتعلم اللغة",
    "كورسات تدريبية مجانية",
    "ارتفع الناتج المحلي الإجمالي",
    "الممثلة ناتاشا",
    "قال السيناتور الأمريكي",
    "مروحية سيكورسكي الأمريكية",
    "a US senator said",
])
def test_negatives(tagger, text):
    assert tagger.tag(text) == ((), ())


def test_match_offsets_survive_diacritics(tagger):
    text = "قمةُ حِلْفِ شَمَالِ الأَطْلَسِيِّ اليوم"
    topics, matches = tagger.tag(text)
    assert topics == ("nato",)
    (m,) = matches
    assert m.text == text[m.start:m.end] == "حِلْفِ شَمَالِ الأَطْلَسِيِّ"


def test_real_articles_ocean_and_sikorsky_are_not_nato(tagger):
    """The ANT topical subset's crude regex hits include the ocean and Sikorsky; we must not."""
    docs = topical_docs()
    for d in docs:
        text = f"{d.title}\n{d.abstract}\n{d.text}"
        _, matches = tagger.tag(text)
        for m in matches:
            assert "المحيط" not in text[max(0, m.start - 8):m.start], m
            assert "سيكورسك" not in m.text
    tagged = sum(1 for d in docs if tagger.tag(f"{d.title}\n{d.text}")[0])
    assert tagged > 100  # the subset really is about these topics, mostly


def test_language_detection():
    assert detect_language("قال الأمين العام لحلف شمال الأطلسي") == "ar"
    assert detect_language("NATO foreign ministers meet in Brussels to discuss Ukraine") == "en"
    assert detect_language("Les ministres de l'OTAN se réunissent à Bruxelles pour discuter") == "fr"
    assert detect_language("این یک متن فارسی است", declared="fa") == "fa"
