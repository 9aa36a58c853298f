"""UI strings in Arabic and English, and which language a request gets.

The language is the `lang` cookie when set (the switch in every page's header sets it), else
the first of Accept-Language that we have, else Arabic (the users read Arabic feeds). Feed text
is never translated; these are only the page's own words."""

from __future__ import annotations

LANGS = ("ar", "en")
DEFAULT = "ar"
COOKIE = "raqib_lang"

STRINGS: dict[str, dict[str, str]] = {
    "ar": {
        "app": "رقيب",
        "nav.search": "بحث",
        "nav.topics": "المواضيع",
        "nav.feeds": "المصادر",
        "nav.subscriptions": "الاشتراكات",
        "nav.alerts": "سجل التنبيهات",
        "nav.login": "دخول",
        "nav.logout": "خروج",
        "lang.switch": "English",
        "search.placeholder": "اكتب استعلامًا، مثل: الناتو أو topic:kursk",
        "search.button": "ابحث",
        "search.total": "{n} مقالة",
        "search.none": "لا نتائج.",
        "search.more": "المزيد",
        "search.sort": "الترتيب",
        "search.sort.relevance": "الأنسب",
        "search.sort.date": "الأحدث",
        "search.help": "صيغة الاستعلام",
        "search.facets": "تصفية",
        "search.facet.topic": "الموضوع",
        "search.facet.source": "المصدر",
        "search.facet.language": "اللغة",
        "search.facet.day": "اليوم",
        "help.word": "الكلمة بكل أشكالها: الناتو تجد للناتو وبالناتو",
        "help.phrase": "عبارة كما هي",
        "help.and": "الاثنتان معًا",
        "help.or": "إحداهما",
        "help.not": "من دون",
        "help.title": "في العنوان فقط",
        "help.topic": "موسومة بموضوع",
        "help.source": "من مصدر",
        "help.date": "بين تاريخين",
        "article.source": "المصدر",
        "article.published": "نُشرت",
        "article.topics": "المواضيع",
        "article.original": "المقالة الأصلية",
        "article.mentions": "الإشارات",
        "article.notfound": "لا توجد مقالة بهذا المعرّف.",
        "topics.title": "المواضيع المتابَعة",
        "topic.timeline": "الإشارات يومًا بيوم",
        "topic.sources": "أكثر المصادر (من آخر {n} مقالة)",
        "topic.latest": "آخر المقالات",
        "topic.none": "لا مقالات لهذا الموضوع بعد.",
        "topic.unknown": "لا يوجد موضوع بهذا المعرّف.",
        "feeds.title": "المصادر",
        "feeds.id": "المعرّف",
        "feeds.url": "العنوان",
        "feeds.enabled": "مفعّل",
        "feeds.last_poll": "آخر جلب",
        "feeds.errors": "أخطاء متتالية",
        "feeds.last_error": "آخر خطأ",
        "feeds.next_due": "الجلب التالي",
        "feeds.poll": "اجلب الآن",
        "feeds.polled": "جُلب {id}: {status}",
        "feeds.readonly": "هذا الخادم للقراءة فقط (raqib web): لا جلب من هنا.",
        "feeds.yes": "نعم",
        "feeds.no": "لا",
        "subs.title": "الاشتراكات",
        "subs.id": "المعرّف",
        "subs.query": "الاستعلام",
        "subs.channels": "القنوات",
        "subs.origin": "المصدر",
        "subs.new": "اشتراك جديد",
        "subs.preview": "معاينة",
        "subs.save": "احفظ",
        "subs.remove": "احذف",
        "subs.saved": "حُفظ الاشتراك {id}.",
        "subs.removed": "حُذف الاشتراك {id}.",
        "subs.would": "كان سيطابق {n} مقالة",
        "subs.example": "مثلًا:",
        "subs.future": "الاشتراك الجديد ينبّه على ما يُخزَّن من الآن فصاعدًا فقط.",
        "subs.file": "معرّف في alerts.yaml؛ غيّره هناك.",
        "subs.exists": "يوجد اشتراك بالمعرّف {id}.",
        "subs.bad_id": "المعرّف: حروف لاتينية وأرقام و - و _ فقط.",
        "subs.no_channel": "اختر قناة واحدة على الأقل.",
        "subs.no_channels": "لا قنوات معرّفة في alerts.yaml.",
        "alerts.title": "سجل التنبيهات",
        "alerts.subscription": "الاشتراك",
        "alerts.article": "المقالة",
        "alerts.channel": "القناة",
        "alerts.status": "الحالة",
        "alerts.attempts": "المحاولات",
        "alerts.error": "الخطأ",
        "alerts.sent": "أُرسل",
        "alerts.none": "لا تنبيهات بعد.",
        "login.title": "الدخول",
        "login.token": "رمز الوصول (API token)",
        "login.button": "ادخل",
        "login.bad": "رمز غير معروف أو ملغى.",
        "login.needed": "هذا الخادم يطلب رمز وصول.",
        "login.hint": "أنشئ رمزًا بالأمر raqib tokens create --scope read",
        "error.query": "استعلام غير صالح: {detail}",
        "error.csrf": "انتهت صلاحية النموذج؛ أعد المحاولة.",
        "error.forbidden": "هذا يحتاج رمزًا بصلاحية admin.",
        "error.notfound": "الصفحة غير موجودة.",
    },
    "en": {
        "app": "Raqib",
        "nav.search": "Search",
        "nav.topics": "Topics",
        "nav.feeds": "Feeds",
        "nav.subscriptions": "Subscriptions",
        "nav.alerts": "Alert log",
        "nav.login": "Log in",
        "nav.logout": "Log out",
        "lang.switch": "العربية",
        "search.placeholder": "Type a query, e.g. الناتو or topic:kursk",
        "search.button": "Search",
        "search.total": "{n} articles",
        "search.none": "No results.",
        "search.more": "More",
        "search.sort": "Sort",
        "search.sort.relevance": "Relevance",
        "search.sort.date": "Newest",
        "search.help": "Query syntax",
        "search.facets": "Refine",
        "search.facet.topic": "Topic",
        "search.facet.source": "Source",
        "search.facet.language": "Language",
        "search.facet.day": "Day",
        "help.word": "the word in every form: الناتو finds للناتو, بالناتو",
        "help.phrase": "an exact phrase",
        "help.and": "both",
        "help.or": "either",
        "help.not": "without",
        "help.title": "in the title only",
        "help.topic": "tagged with a topic",
        "help.source": "from a feed",
        "help.date": "between two dates",
        "article.source": "Source",
        "article.published": "Published",
        "article.topics": "Topics",
        "article.original": "Original article",
        "article.mentions": "Mentions",
        "article.notfound": "No article with this id.",
        "topics.title": "Tracked topics",
        "topic.timeline": "Mentions per day",
        "topic.sources": "Top sources (of the latest {n} articles)",
        "topic.latest": "Latest articles",
        "topic.none": "No articles for this topic yet.",
        "topic.unknown": "No topic with this id.",
        "feeds.title": "Feeds",
        "feeds.id": "Id",
        "feeds.url": "URL",
        "feeds.enabled": "Enabled",
        "feeds.last_poll": "Last poll",
        "feeds.errors": "Errors in a row",
        "feeds.last_error": "Last error",
        "feeds.next_due": "Next poll",
        "feeds.poll": "Poll now",
        "feeds.polled": "Polled {id}: {status}",
        "feeds.readonly": "This server is read-only (raqib web): no polling from here.",
        "feeds.yes": "yes",
        "feeds.no": "no",
        "subs.title": "Subscriptions",
        "subs.id": "Id",
        "subs.query": "Query",
        "subs.channels": "Channels",
        "subs.origin": "Defined in",
        "subs.new": "New subscription",
        "subs.preview": "Preview",
        "subs.save": "Save",
        "subs.remove": "Remove",
        "subs.saved": "Saved subscription {id}.",
        "subs.removed": "Removed subscription {id}.",
        "subs.would": "Would have matched {n} articles",
        "subs.example": "for example:",
        "subs.future": "A new subscription alerts only on articles stored from now on.",
        "subs.file": "defined in alerts.yaml; change it there.",
        "subs.exists": "A subscription {id} exists.",
        "subs.bad_id": "Id: Latin letters, digits, - and _ only.",
        "subs.no_channel": "Choose at least one channel.",
        "subs.no_channels": "No channels are defined in alerts.yaml.",
        "alerts.title": "Alert log",
        "alerts.subscription": "Subscription",
        "alerts.article": "Article",
        "alerts.channel": "Channel",
        "alerts.status": "Status",
        "alerts.attempts": "Attempts",
        "alerts.error": "Error",
        "alerts.sent": "Sent",
        "alerts.none": "No alerts yet.",
        "login.title": "Log in",
        "login.token": "API token",
        "login.button": "Log in",
        "login.bad": "Unknown or revoked token.",
        "login.needed": "This server requires an API token.",
        "login.hint": "Create one with raqib tokens create --scope read",
        "error.query": "Invalid query: {detail}",
        "error.csrf": "The form expired; try again.",
        "error.forbidden": "This needs a token with scope admin.",
        "error.notfound": "Page not found.",
    },
}


def direction(lang: str) -> str:
    return "rtl" if lang == "ar" else "ltr"


def pick(cookie: str | None, accept_language: str | None) -> str:
    """The UI language: the cookie, else the best Accept-Language we have, else Arabic."""
    if cookie in LANGS:
        return cookie  # type: ignore[return-value]
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower().split("-")[0]))
    for _, _, tag in sorted(ranked):
        if tag in LANGS:
            return tag
    return DEFAULT


def translator(lang: str):
    """t(key, **values): the string in `lang`, falling back to English, then to the key."""
    table, fallback = STRINGS.get(lang, STRINGS[DEFAULT]), STRINGS["en"]

    def t(key: str, **values) -> str:
        s = table.get(key) or fallback.get(key) or key
        return s.format(**values) if values else s

    return t
