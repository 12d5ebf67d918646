"""Word-piece heatmaps of one document: TE's standalone LaTeX files and an HTML page for all documents."""
import html

LATEX_ESCAPES = ("\\", "%", "&", "^", "#", "_", "{", "}")
LATEX_HEAD = r"""\documentclass[varwidth=150mm]{standalone}
\special{papersize=210mm,297mm}
\usepackage{color}
\usepackage{tcolorbox}
\usepackage{CJK}
\usepackage{adjustbox}
\tcbset{width=0.9\textwidth,boxrule=0pt,colback=red,arc=0pt,auto outer arc,left=0pt,right=0pt,boxsep=5pt}
\begin{document}
\begin{CJK*}{UTF8}{gbsn}
"""


def percent(scores):
    """TE's colour intensities: min-max to 0..100, values under 1 set to 0 (all 0 for a constant map)."""
    scores = [float(s) for s in scores]
    low, high = min(scores), max(scores)
    if high == low:
        return [0.0] * len(scores)
    values = [100 * (s - low) / (high - low) for s in scores]
    return [0.0 if v < 1 else v for v in values]


def _latex_word(token):
    token = token.replace("$", "")
    for char in LATEX_ESCAPES:
        token = token.replace(char, "\\" + char)
    return token


def latex(tokens, scores, color="red"):
    """TE's ``generate``: each word piece in a colour box; ``##`` pieces are glued to the previous one."""
    parts = []
    for token, value in zip(tokens, percent(scores[:len(tokens)])):
        glued = token.startswith("##")
        box = "\\colorbox{%s!%s}{\\strut %s}" % (color, value, _latex_word(token[2:] if glued else token))
        parts.append(box if glued else " " + box)
    body = "{\\setlength{\\fboxsep}{0pt}\\colorbox{white!0}{\\parbox{0.9\\textwidth}{\n" + "".join(parts) + "\n}}}"
    return LATEX_HEAD + body + "\n\\end{CJK*}\n\\end{document}"


def html_row(tokens, scores, rgb=(220, 40, 40)):
    """One heatmap line: word pieces on a background whose opacity is the min-max normalised score."""
    spans = []
    for token, value in zip(tokens, percent(scores[:len(tokens)])):
        glued = token.startswith("##")
        text = html.escape(token[2:] if glued else token)
        style = f"background: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {value / 100:.2f})"
        spans.append(("" if glued else " ") + f'<span style="{style}" title="{value:.0f}">{text}</span>')
    return "".join(spans).strip()


def html_page(title, sections):
    """A page of ``(heading, [(label, html_row), ...])`` sections."""
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:auto} p{line-height:1.8}"
             " .label{font-weight:bold;color:#555}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for heading, rows in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for label, row in rows:
            parts.append(f"<p><span class='label'>{html.escape(label)}:</span> {row}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
