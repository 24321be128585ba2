"""Lab and biopsy reports: a pathologist reviews blood work, a biopsy or a cytology report."""

from core.specialty import (
    AGREES,
    DIFFERS,
    DIFFERS_IN_DETAIL,
    Choice,
    ConcordanceGrade,
    DateField,
    DocumentKind,
    Form,
    LongText,
    MultiChoice,
    Number,
    PhysicalMaterial,
    Repeating,
    ReportSection,
    RequiredDocument,
    ShowIf,
    SingleChoice,
    Specialty,
    Term,
    Text,
)

SLUG = "pathology"

TISSUE = ("biopsy", "cytology")

INTAKE = Form(
    version=1,
    fields=(
        SingleChoice(
            name="report_kind",
            label="What kind of report is it?",
            required=True,
            choices=(
                Choice(
                    "blood_work",
                    "Blood tests",
                    help="Results from a blood sample, for example a blood count or liver tests.",
                ),
                Choice(
                    "biopsy",
                    "Biopsy",
                    help=(
                        "A small piece of tissue was taken and looked at under a microscope, "
                        "or a lump or organ was removed in an operation."
                    ),
                ),
                Choice(
                    "cytology",
                    "Cytology",
                    help=(
                        "Cells were taken with a thin needle, a brush or a swab, or from "
                        "fluid – for example a smear test, or a needle test of a lump."
                    ),
                ),
                Choice("other", "Something else"),
            ),
        ),
        Text(
            name="report_kind_other",
            label="What kind of test was it?",
            help="Copy the title of the report, for example “urine test” or “bone marrow”.",
            required=True,
            show_if=ShowIf("report_kind", ("other",)),
        ),
        SingleChoice(
            name="specimen_type",
            label="How was the sample taken?",
            help="The report often says this near the top, next to “specimen”.",
            required=True,
            show_if=ShowIf("report_kind", TISSUE),
            choices=(
                Choice("core_needle", "With a hollow needle (core biopsy)"),
                Choice("fine_needle", "With a very thin needle (fine needle aspiration, FNA)"),
                Choice("endoscopic", "During a camera test (endoscopy, colonoscopy, bronchoscopy)"),
                Choice("skin", "From the skin (punch or shave biopsy)"),
                Choice("excision", "A lump or a piece of skin was cut out (excision)"),
                Choice("resection", "Part or all of an organ was removed in an operation"),
                Choice("bone_marrow", "From the bone marrow"),
                Choice("fluid", "From body fluid (for example urine or fluid around the lungs)"),
                Choice("smear", "A smear, brush or swab (for example a cervical smear test)"),
                Choice("unknown", "I don't know"),
            ),
        ),
        Text(
            name="specimen_site",
            label="Where in the body was the sample taken from?",
            help="For example “left breast”, “skin on the back” or “lymph node in the neck”.",
            required=True,
            show_if=ShowIf("report_kind", TISSUE),
        ),
        DateField(
            name="collection_date",
            label="When was the sample taken?",
            help=(
                "The report calls it the “collection”, “procedure” or “specimen” date. If it "
                "only shows the date the lab received it, use that."
            ),
            required=True,
            not_before_birth=True,
        ),
        Text(
            name="lab_name",
            label="Which laboratory or hospital wrote the report?",
            required=True,
        ),
        LongText(
            name="original_result",
            label="What does the report say?",
            help=(
                "Copy the part called “Diagnosis”, “Conclusion” or “Final diagnosis” word for "
                "word. For blood tests, copy the results your doctor was worried about, with "
                "their numbers and units."
            ),
            required=True,
        ),
        MultiChoice(
            name="tests_done",
            label="Which extra tests were done on the sample?",
            help=(
                "Tick the ones the report mentions, or “I don't know”. Leave this empty for "
                "ordinary blood tests."
            ),
            choices=(
                Choice("he", "H&E – the standard stain (haematoxylin and eosin)"),
                Choice(
                    "ihc",
                    "Immunohistochemistry (IHC) – marker stains such as ER, PR, HER2, Ki-67 or "
                    "PD-L1",
                ),
                Choice("special_stains", "Special stains – for example PAS, Gram or iron"),
                Choice(
                    "molecular",
                    "Molecular or genetic tests, including NGS (next-generation sequencing) "
                    "and PCR",
                ),
                Choice("flow_cytometry", "Flow cytometry – counts and sorts cells"),
                Choice("fish", "FISH – looks at genes or chromosomes, for example HER2 FISH"),
                Choice("unknown", "I don't know"),
            ),
        ),
        SingleChoice(
            name="material_available",
            label="Could the lab send us the glass slides or tissue blocks?",
            help=(
                "A pathologist gives the best second opinion by looking at the original glass "
                "slides under a microscope. The rest of the sample is kept in small wax blocks. "
                "Labs usually lend them to another hospital when the patient asks – you may "
                "need to sign a form. You don't need to arrange anything now; we will tell you "
                "how. They are sent by post or courier, not uploaded."
            ),
            required=True,
            show_if=ShowIf("report_kind", (*TISSUE, "other")),
            choices=(
                Choice("yes", "Yes"),
                Choice("no", "No"),
                Choice("dont_know", "I don't know"),
            ),
        ),
        LongText(
            name="diagnostic_question",
            label="What is uncertain about this result?",
            help=(
                "What should the pathologist look at most closely? For example “The report "
                "says the cells are unusual but not cancer – is that right?”, “Is the grade "
                "right?” or “Should more tests be done on my sample?”. You can ask all your "
                "other questions in the next step."
            ),
            max_length=3000,
        ),
    ),
)

MARGIN_CHOICES = (
    Choice("not_applicable", "Not applicable (e.g. core / incisional biopsy)"),
    Choice("negative", "Negative (clear)"),
    Choice("close", "Close"),
    Choice("positive", "Positive (involved)"),
    Choice("cannot_assess", "Cannot be assessed"),
)

REVIEW = Form(
    version=1,
    fields=(
        MultiChoice(
            name="material_reviewed",
            label="Basis of this opinion",
            help="What the diagnosis rests on (the items are ticked under “What you reviewed”).",
            required=True,
            choices=(
                Choice("report", "Original report only"),
                Choice("digital", "Digital / whole-slide images"),
                Choice("slides", "Original glass slides"),
                Choice("recuts", "Recut sections from blocks"),
                Choice("new_tests", "Additional tests performed on blocks"),
            ),
        ),
        SingleChoice(
            name="specimen_adequacy",
            label="Specimen adequacy",
            required=True,
            choices=(
                Choice("adequate", "Adequate for diagnosis"),
                Choice("limited", "Limited – diagnosis qualified"),
                Choice("inadequate", "Inadequate / non-diagnostic"),
            ),
        ),
        LongText(
            name="adequacy_comment",
            label="Reason for limited or inadequate specimen",
            help=(
                "E.g. scant cellularity, crush or cautery artefact, no lesional tissue, "
                "haemolysed or clotted sample, poor fixation."
            ),
            required=True,
            show_if=ShowIf("specimen_adequacy", ("limited", "inadequate")),
            max_length=2000,
            rows=3,
        ),
        LongText(
            name="diagnosis",
            label="Diagnosis",
            help="The integrated diagnosis as it should read in the report (WHO terminology).",
            required=True,
        ),
        Repeating(
            name="findings",
            label="Findings per specimen",
            help="One entry per specimen / part (A, B, C…). Leave empty for laboratory results.",
            max_items=20,
            item_label="Specimen",
            fields=(
                Text(
                    name="specimen_label",
                    label="Specimen",
                    help="E.g. “A: right breast 10 o'clock, core biopsy”.",
                    required=True,
                ),
                Text(name="diagnosis", label="Diagnosis", required=True, max_length=500),
                Text(
                    name="grade",
                    label="Grade",
                    help="System and score, e.g. “Nottingham grade 2 (3+2+1)”, “Gleason 3+4=7”.",
                    max_length=120,
                ),
                SingleChoice(name="margin_status", label="Margin status", choices=MARGIN_CHOICES),
                Number(
                    name="closest_margin_mm",
                    label="Closest margin",
                    unit="mm",
                    minimum=0,
                    maximum=200,
                    decimals=1,
                    show_if=ShowIf("margin_status", ("negative", "close")),
                ),
            ),
        ),
        Text(
            name="grade_stage",
            label="Tumour grade / stage, if applicable",
            help="E.g. “pT2 pN1a (AJCC 8th edition)”, “WHO grade 2”.",
            max_length=300,
        ),
        LongText(
            name="additional_tests",
            label="Additional tests recommended",
            help="Immunohistochemistry, molecular / NGS, FISH, flow cytometry, repeat sampling.",
        ),
        LongText(
            name="discordance_comment",
            label="Differences from the original report",
            help="What differs from the original diagnosis and whether it changes management.",
            max_length=3000,
        ),
    ),
)

# Areas a pathologist may declare; `rules.suggest_subspecialty` picks one for a case.
SUBSPECIALTIES = (
    Choice("dermatopathology", "Dermatopathology (skin)"),
    Choice("haematopathology", "Haematopathology (blood, bone marrow, lymph nodes)"),
    Choice("cytopathology", "Cytopathology (cells: needle aspirates, smears, fluids)"),
    Choice("gastrointestinal", "Gastrointestinal and liver pathology"),
    Choice("paediatric", "Paediatric pathology"),
)

# Words pathology reports use, explained for patients: core prints those a report uses.
GLOSSARY = (
    Term(
        "Benign",
        "Not cancer. A benign growth does not spread to other parts of the body.",
    ),
    Term(
        "Malignant",
        "Cancer: cells that can grow into nearby tissue and spread to other parts of the body.",
        also=("malignancy",),
    ),
    Term(
        "Carcinoma",
        "The most common kind of cancer. It starts in the cells that line organs and skin.",
        also=("carcinomas",),
    ),
    Term(
        "Invasive",
        "Cancer cells have grown beyond the layer where they started into the tissue around it.",
    ),
    Term(
        "In situ",
        "Abnormal cells that have stayed in the layer where they started and have not grown "
        "into the tissue around it.",
    ),
    Term(
        "No special type",
        "The most common pattern of breast cancer under the microscope. Often written NST.",
        also=("NST",),
    ),
    Term(
        "Grade",
        "How different the cells look from normal cells under the microscope. A low grade "
        "usually means slower growth; a high grade, faster growth.",
        also=("grades", "graded"),
    ),
    Term(
        "Stage",
        "How big a cancer is and how far it has spread. Letters and numbers such as pT2 or pN1 "
        "describe the stage.",
        also=("staging",),
    ),
    Term(
        "Margin",
        "The edge of the tissue that was removed. A clear margin means no disease was seen at "
        "the edge; an involved (positive) margin means some may have been left behind.",
        also=("margins",),
    ),
    Term(
        "Specimen",
        "The sample of tissue, cells or fluid that was sent to the laboratory.",
        also=("specimens",),
    ),
    Term(
        "Biopsy",
        "Taking a small piece of tissue, usually with a needle, to look at it under a microscope.",
        also=("biopsies",),
    ),
    Term(
        "Cytology",
        "Looking at single cells under a microscope, for example cells taken with a thin "
        "needle or a smear.",
    ),
    Term(
        "Lymph node",
        "A small bean-shaped gland that is part of the body's defence against infection. "
        "Cancer can spread to the nearest lymph nodes first.",
        also=("lymph nodes",),
    ),
    Term(
        "Metastasis",
        "Cancer that has spread from where it started to another part of the body.",
        also=("metastases", "metastatic"),
    ),
    Term(
        "Dysplasia",
        "Cells that look abnormal but are not cancer. Some kinds can turn into cancer over "
        "time, so they are watched or removed.",
    ),
    Term(
        "Atypia",
        "Cells that look a little unusual under the microscope. It is not cancer.",
        also=("atypical",),
    ),
    Term(
        "Immunohistochemistry",
        "Extra stains on the sample that show whether the cells carry certain markers. They "
        "help name the disease and choose treatment.",
        also=("IHC",),
    ),
    Term(
        "Hormone receptors",
        "Markers (ER and PR) that show whether a breast cancer grows in response to hormones. "
        "If it does, hormone-blocking medicines can help.",
        also=("ER", "PR", "oestrogen receptor", "progesterone receptor"),
    ),
    Term(
        "HER2",
        "A protein that makes some cancers grow faster. Cancers with a lot of it can be treated "
        "with medicines that target it.",
    ),
    Term(
        "Ki-67",
        "A marker of how many cells are dividing. A higher number means the cells are growing "
        "faster.",
    ),
)


SPECIALTY = Specialty(
    slug=SLUG,
    title="Lab and biopsy reports",
    subspecialties=SUBSPECIALTIES,
    summary=(
        "Choose this when you want a pathologist to review blood work, a biopsy or cytology report."
    ),
    audience=(
        "Adults and children with a blood test, biopsy or cytology result they want a "
        "pathologist to check."
    ),
    intake=INTAKE,
    required_documents=(
        RequiredDocument(
            key="report",
            label="The pathology or lab report",
            help=(
                "All pages of the report, including any extra pages added later (called an "
                "“addendum” or “supplementary report”). A clear photo is fine. Glass slides and "
                "tissue blocks are not uploaded – we tell you how to send them."
            ),
        ),
        RequiredDocument(
            key="related_reports",
            label="Other related reports",
            help="For example earlier biopsy reports, scan reports or a letter from your doctor.",
            required=False,
        ),
    ),
    physical_materials=(
        PhysicalMaterial(
            key="slides",
            label="The original glass slides",
            help=(
                "Ask the laboratory that wrote the report to lend us all the glass slides of "
                "this sample, including any special or marker stains. They pack them in a slide "
                "box and send them by post or courier, with a copy of the report."
            ),
            # A tissue or cell sample the lab can probably lend: the review needs the slides.
            applies_when=(
                ShowIf("report_kind", (*TISSUE, "other")),
                ShowIf("material_available", ("yes", "dont_know")),
            ),
        ),
        PhysicalMaterial(
            key="blocks",
            label="The tissue blocks (paraffin blocks)",
            help=(
                "Only if the laboratory agrees to lend them: the pathologist may need them for "
                "extra tests. They can come in the same package as the slides."
            ),
            required=False,
            applies_when=(
                ShowIf("report_kind", ("biopsy",)),
                ShowIf("material_available", ("yes", "dont_know")),
            ),
        ),
    ),
    accepted_kinds=(DocumentKind.PDF, DocumentKind.IMAGE),
    review=REVIEW,
    concordance=(
        ConcordanceGrade("concordant", "Concordant", help="Same diagnosis.", level=AGREES),
        ConcordanceGrade(
            "minor_discordance",
            "Minor discordance",
            help="A difference that does not change management.",
            level=DIFFERS_IN_DETAIL,
        ),
        ConcordanceGrade(
            "major_discordance",
            "Major discordance",
            help="A difference that changes management or prognosis.",
            level=DIFFERS,
        ),
    ),
    report_sections=(
        ReportSection(
            "material",
            "Material and adequacy",
            ("material_reviewed", "specimen_adequacy", "adequacy_comment"),
        ),
        ReportSection("diagnosis", "Diagnosis", ("diagnosis", "findings", "grade_stage")),
        ReportSection(
            "comparison", "Comparison with the original report", ("discordance_comment",)
        ),
        ReportSection("recommendations", "Recommendations", ("additional_tests",)),
    ),
    report_template="pathology/report.html",
    glossary=GLOSSARY,
    for_children=True,
)
