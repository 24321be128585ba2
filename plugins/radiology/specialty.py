"""Radiology second opinion: a radiologist reads the images again and compares with the report."""

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
    Number,
    Repeating,
    ReportSection,
    RequiredDocument,
    ScoredCategory,
    ShowIf,
    SingleChoice,
    Specialty,
    Term,
    Text,
    YesNo,
)

SLUG = "radiology"

MODALITIES = (
    Choice("mri", "MRI", help="A scan inside a long, noisy tube that uses a strong magnet."),
    Choice("ct", "CT", help="A scan in a short ring-shaped machine that uses X-rays."),
    Choice("xray", "X-ray", help="A single picture, for example of the chest or a bone."),
    Choice("ultrasound", "Ultrasound", help="Gel on the skin and a probe moved over it."),
    Choice("mammogram", "Mammogram", help="An X-ray of the breast."),
    Choice("pet_ct", "PET-CT", help="A scan after an injection of a weak radioactive sugar."),
    Choice(
        "nuclear_medicine",
        "Nuclear medicine scan",
        help="For example a bone scan or a thyroid scan, after an injection of a tracer.",
    ),
    Choice("other", "Something else"),
)

BODY_PARTS = (
    Choice("head", "Head and brain"),
    Choice("face", "Face, sinuses, eyes or ears"),
    Choice("neck", "Neck (including the thyroid)"),
    Choice("spine", "Spine (back or neck bones)"),
    Choice("chest", "Chest and lungs"),
    Choice("heart", "Heart and blood vessels"),
    Choice("breast", "Breast"),
    Choice("abdomen", "Belly (abdomen)"),
    Choice("pelvis", "Pelvis (lower belly, bladder, womb, prostate)"),
    Choice("arm", "Shoulder, arm or hand"),
    Choice("leg", "Hip, leg or foot"),
    Choice("whole_body", "Whole body"),
    Choice("other", "Somewhere else"),
)

INTAKE = Form(
    version=1,
    fields=(
        SingleChoice(
            name="modality",
            label="What kind of scan was it?",
            help="The report says it at the top, for example “MRI brain” or “CT chest”.",
            required=True,
            choices=MODALITIES,
        ),
        Text(
            name="modality_other",
            label="What was the scan called?",
            required=True,
            show_if=ShowIf("modality", ("other",)),
        ),
        SingleChoice(
            name="body_part",
            label="Which part of the body was scanned?",
            required=True,
            choices=BODY_PARTS,
        ),
        Text(
            name="body_part_other",
            label="Which part of the body?",
            required=True,
            show_if=ShowIf("body_part", ("other",)),
        ),
        DateField(
            name="study_date",
            label="When was the scan done?",
            help="The date of the scan itself, not of the report.",
            required=True,
            not_before_birth=True,
        ),
        Text(
            name="facility",
            label="Where was it done?",
            help="The name of the hospital or scan centre, and the town.",
            required=True,
        ),
        SingleChoice(
            name="contrast",
            label="Were you given contrast?",
            help=(
                "Contrast is a dye that makes some parts show up better. It is given through a "
                "needle in the arm, or as a drink. The report may say “with contrast”, “IV "
                "contrast”, “gadolinium” or “post-contrast”."
            ),
            required=True,
            choices=(
                Choice("yes", "Yes"),
                Choice("no", "No"),
                Choice("dont_know", "I don't know"),
            ),
        ),
        LongText(
            name="original_impression",
            label="What the report says",
            help=(
                "Copy it from the report, word for word: the part called “Impression”, "
                "“Conclusion” or “Opinion”, usually at the end."
            ),
            required=True,
        ),
        LongText(
            name="clinical_question",
            label="Why was the scan done?",
            help=(
                "What were the doctors looking for? For example “headaches for 3 months”, “a "
                "cough that won't go away” or “checking a lump seen on an earlier scan”. If "
                "you want the new radiologist to look closely at something, say so here too."
            ),
            required=True,
            max_length=3000,
        ),
        YesNo(
            name="has_prior_studies",
            label="Have you had earlier scans of the same part of the body?",
            help="Earlier scans let the radiologist see whether something has changed.",
            required=True,
        ),
        Repeating(
            name="prior_studies",
            label="Earlier scans",
            help="Add one line for each earlier scan, the most recent first.",
            required=True,
            show_if=ShowIf("has_prior_studies", ("yes",)),
            min_items=1,
            max_items=10,
            item_label="Earlier scan",
            fields=(
                SingleChoice(
                    name="modality", label="Kind of scan", required=True, choices=MODALITIES
                ),
                DateField(
                    name="study_date",
                    label="Date",
                    help="If you don't know the exact day, choose the 1st of the month.",
                    required=True,
                    not_before_birth=True,
                ),
                SingleChoice(name="body_part", label="Part of the body", choices=BODY_PARTS),
            ),
        ),
    ),
)

BIRADS = (
    Choice("0", "0 – Incomplete: needs additional imaging and/or prior images for comparison"),
    Choice("1", "1 – Negative"),
    Choice("2", "2 – Benign"),
    Choice("3", "3 – Probably benign (≤ 2% malignancy): short-interval follow-up"),
    Choice("4A", "4A – Low suspicion for malignancy (> 2% to ≤ 10%)"),
    Choice("4B", "4B – Moderate suspicion for malignancy (> 10% to ≤ 50%)"),
    Choice("4C", "4C – High suspicion for malignancy (> 50% to < 95%)"),
    Choice("5", "5 – Highly suggestive of malignancy (≥ 95%)"),
    Choice("6", "6 – Known biopsy-proven malignancy"),
)

REVIEW = Form(
    version=1,
    fields=(
        SingleChoice(
            name="study_quality",
            label="Technique / study quality",
            required=True,
            choices=(
                Choice("diagnostic", "Diagnostic"),
                Choice(
                    "limited",
                    "Diagnostic with limitations",
                    help="E.g. motion or metal artefact, incomplete coverage, missing sequences.",
                ),
                Choice("non_diagnostic", "Non-diagnostic"),
            ),
        ),
        LongText(
            name="quality_comment",
            label="Limitations",
            help="What limits interpretation, and whether a repeat or different study is needed.",
            required=True,
            show_if=ShowIf("study_quality", ("limited", "non_diagnostic")),
            max_length=2000,
            rows=3,
        ),
        Text(
            name="comparison",
            label="Comparison",
            help="Prior studies reviewed, with dates; “None available” if none.",
            max_length=500,
        ),
        LongText(name="findings", label="Findings", required=True, max_length=10000, rows=10),
        Repeating(
            name="lesions",
            label="Lesions",
            help="One entry per measurable or index lesion.",
            max_items=20,
            item_label="Lesion",
            fields=(
                Text(
                    name="location",
                    label="Location",
                    help="Organ, segment / lobe / clock position.",
                    required=True,
                ),
                Number(
                    name="size_mm",
                    label="Size (longest axis)",
                    unit="mm",
                    minimum=0,
                    maximum=500,
                ),
                Text(
                    name="characterisation",
                    label="Characterisation",
                    help="E.g. “solid, spiculated”, “simple cyst”, “rim-enhancing”.",
                    max_length=300,
                ),
                Text(name="series_image", label="Series / image", max_length=40),
            ),
        ),
        YesNo(
            name="breast_imaging",
            label="Breast imaging?",
            help="Mammogram, breast MRI or breast ultrasound: a BI-RADS category is required.",
            required=True,
        ),
        ScoredCategory(
            name="birads",
            label="BI-RADS assessment category",
            help="ACR BI-RADS Atlas, 5th edition.",
            required=True,
            show_if=ShowIf("breast_imaging", ("yes",)),
            choices=BIRADS,
        ),
        LongText(name="impression", label="Impression", required=True, max_length=5000),
        LongText(
            name="recommendation",
            label="Recommendation",
            help="Further imaging, follow-up interval, tissue sampling or clinical correlation.",
            required=True,
            max_length=3000,
        ),
        LongText(
            name="discrepancy_comment",
            label="Discrepancies with the original report",
            help="What differs from the original report and its clinical significance.",
            max_length=3000,
        ),
    ),
)

# Areas a radiologist may declare; `rules.suggest_subspecialty` picks one for a case.
SUBSPECIALTIES = (
    Choice("neuroradiology", "Neuroradiology (brain, head and neck, spine)"),
    Choice("musculoskeletal", "Musculoskeletal (bones, joints, muscles)"),
    Choice("breast", "Breast imaging"),
    Choice("thoracic", "Thoracic (chest and lungs)"),
    Choice("cardiac", "Cardiac and vascular"),
    Choice("abdominal", "Abdominal and pelvic"),
    Choice("paediatric", "Paediatric radiology"),
)

# Words radiology reports use, explained for patients: core prints those a report uses.
GLOSSARY = (
    Term(
        "BI-RADS",
        "A scale from 0 to 6 that radiologists use for breast scans. Low numbers mean nothing "
        "worrying was seen; higher numbers mean a closer look or a biopsy is advised.",
        also=("BIRADS",),
    ),
    Term(
        "Impression",
        "The radiologist's conclusion: the short summary of what the scan shows and what it "
        "most likely means.",
    ),
    Term(
        "Findings",
        "What the radiologist saw on the images, part by part, before drawing a conclusion.",
    ),
    Term(
        "Lesion",
        "Any area that looks different from the tissue around it. It does not by itself mean "
        "cancer: many lesions are harmless.",
        also=("lesions",),
    ),
    Term(
        "Nodule",
        "A small rounded spot, usually under 3 cm. Most nodules are harmless, but some are "
        "checked again with a later scan.",
        also=("nodules",),
    ),
    Term(
        "Mass",
        "A lump or area of tissue that is bigger than a nodule. Tests decide what it is.",
        also=("masses",),
    ),
    Term(
        "Cyst",
        "A small pocket filled with fluid. Simple cysts are very common and almost always "
        "harmless.",
        also=("cysts",),
    ),
    Term(
        "Contrast",
        "A dye given through a needle in the arm or as a drink, so that blood vessels and some "
        "organs show up more clearly on the scan.",
        also=("post-contrast", "gadolinium"),
    ),
    Term(
        "Enhancement",
        "How much a part of the body lights up after contrast dye is given. It helps the "
        "radiologist tell different kinds of tissue apart.",
        also=("enhancing", "enhances", "rim-enhancing"),
    ),
    Term(
        "Incidental finding",
        "Something seen by chance that has nothing to do with why the scan was done. Most are "
        "harmless, but some are checked later.",
        also=("incidental findings", "incidentaloma"),
    ),
    Term(
        "Artefact",
        "A mark or blur on the images caused by movement, metal or the machine, not by the "
        "body itself. It can hide details.",
        also=("artefacts", "artifact", "artifacts"),
    ),
    Term(
        "Benign",
        "Not cancer. A benign change does not spread to other parts of the body.",
    ),
    Term(
        "Malignant",
        "Cancer: cells that can grow into nearby tissue and spread to other parts of the body.",
        also=("malignancy",),
    ),
    Term(
        "Spiculated",
        "Having spiky or star-shaped edges. Radiologists look more closely at a spot with this "
        "shape.",
    ),
    Term(
        "Calcification",
        "A tiny deposit of calcium that shows up as a white dot. Most are harmless; some "
        "patterns need a closer look.",
        also=("calcifications", "microcalcifications", "calcified"),
    ),
    Term(
        "Lymph node",
        "A small bean-shaped gland that is part of the body's defence against infection. Nodes "
        "can swell with an infection or another illness.",
        also=("lymph nodes",),
    ),
    Term(
        "Biopsy",
        "Taking a small piece of tissue, usually with a needle, to look at it under a microscope.",
    ),
    Term(
        "Follow-up",
        "A later check, often another scan after a few months, to see whether anything has "
        "changed.",
        also=("follow up",),
    ),
)


SPECIALTY = Specialty(
    slug=SLUG,
    title="Radiology second opinion",
    subspecialties=SUBSPECIALTIES,
    summary=(
        "Choose this when you want a radiologist to look again at an MRI, CT, X-ray, "
        "ultrasound or mammogram."
    ),
    audience=(
        "Adults and children who have had an MRI, CT, X-ray, ultrasound, mammogram, PET-CT or "
        "nuclear medicine scan."
    ),
    intake=INTAKE,
    required_documents=(
        RequiredDocument(
            key="images",
            label="The scan images",
            help=(
                "The images themselves, from the CD or DVD the hospital gave you or from their "
                "download link (DICOM files). Upload the whole folder or a ZIP of it. Photos "
                "of the screen or printed films are not enough."
            ),
            kinds=(DocumentKind.DICOM,),
        ),
        RequiredDocument(
            key="report",
            label="The original radiologist's report",
            help="The written report of the scan. A PDF or a clear photo of each page is fine.",
            kinds=(DocumentKind.PDF, DocumentKind.IMAGE),
        ),
        RequiredDocument(
            key="prior_studies",
            label="Earlier scans and their reports",
            help="Earlier scans of the same part of the body, so the radiologist can compare.",
            kinds=(DocumentKind.DICOM, DocumentKind.PDF, DocumentKind.IMAGE),
            required=False,
        ),
    ),
    accepted_kinds=(DocumentKind.PDF, DocumentKind.IMAGE, DocumentKind.DICOM),
    review=REVIEW,
    concordance=(
        ConcordanceGrade(
            "agree", "Agree", help="No discrepancy with the original report.", level=AGREES
        ),
        ConcordanceGrade(
            "minor_discrepancy",
            "Minor discrepancy",
            help="A difference unlikely to change management.",
            level=DIFFERS_IN_DETAIL,
        ),
        ConcordanceGrade(
            "major_discrepancy",
            "Major discrepancy",
            help="A difference likely to change management or outcome.",
            level=DIFFERS,
        ),
    ),
    report_sections=(
        ReportSection("technique", "Technique", ("study_quality", "quality_comment", "comparison")),
        ReportSection("findings", "Findings", ("findings", "lesions")),
        ReportSection("impression", "Impression", ("impression", "birads")),
        ReportSection("recommendation", "Recommendation", ("recommendation",)),
        ReportSection(
            "discrepancies", "Comparison with the original report", ("discrepancy_comment",)
        ),
    ),
    report_template="radiology/report.html",
    glossary=GLOSSARY,
    for_children=True,
)
