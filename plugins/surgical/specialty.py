"""The surgical second opinion: is the proposed (non-emergency) operation the right one?"""

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
    Repeating,
    ReportSection,
    RequiredDocument,
    ScoredCategory,
    ShowIf,
    SingleChoice,
    Specialty,
    Term,
    Text,
    Year,
    YesNo,
)

SLUG = "surgical"

URGENCY_CHOICES = (
    Choice("elective", "Planned – there is no rush; it can wait months if needed"),
    Choice("soon", "Soon – within a few weeks"),
    Choice("urgent", "Urgent – within a few days"),
)

INTAKE = Form(
    version=1,
    fields=(
        Text(
            name="procedure",
            label="Which operation has been suggested?",
            help=(
                "Write the name the surgeon used, for example “laparoscopic cholecystectomy” "
                "(keyhole removal of the gallbladder). If you don't know the name, describe "
                "what they want to do."
            ),
            required=True,
        ),
        Text(
            name="surgeon",
            label="Name of the surgeon who suggested it",
            required=True,
        ),
        Text(
            name="hospital",
            label="Hospital where the operation would be done",
            help="The name of the hospital and the town.",
            required=True,
        ),
        LongText(
            name="indication",
            label="Why did the surgeon say you need the operation?",
            help=(
                "In your own words: what problem the operation should fix, and what the surgeon "
                "said could happen if you don't have it."
            ),
            required=True,
            max_length=3000,
        ),
        SingleChoice(
            name="urgency",
            label="How soon did the surgeon say the operation should be done?",
            help=(
                "This service is not for emergencies. If you need an operation today, or you "
                "are getting worse quickly, go to the nearest emergency department or call "
                "your local emergency number now. Our review takes several days, so for an "
                "urgent operation ask your surgeon whether it is safe to wait for it."
            ),
            required=True,
            choices=URGENCY_CHOICES,
        ),
        DateField(
            name="proposed_date",
            label="Date of the operation, if one has been set",
            help="Leave this empty if there is no date yet.",
            allow_future=True,
            allow_past=False,
        ),
        MultiChoice(
            name="alternatives",
            label="Which other choices did the surgeon talk about with you?",
            help="Tick all that were talked about.",
            required=True,
            choices=(
                Choice("medicines", "Medicines"),
                Choice("physiotherapy", "Physiotherapy (exercises with a therapist)"),
                Choice("watchful_waiting", "Waiting and checking again later"),
                Choice("another_operation", "A different operation"),
                Choice("none_discussed", "No other choices were talked about"),
                Choice("other", "Something else"),
            ),
        ),
        Text(
            name="alternatives_other",
            label="What else was talked about?",
            required=True,
            show_if=ShowIf("alternatives", ("other",)),
        ),
        MultiChoice(
            name="comorbidities",
            label="Do you have any of these health problems?",
            help="Tick all that apply. They can change the risks of an operation.",
            required=True,
            choices=(
                Choice("diabetes", "Diabetes"),
                Choice("hypertension", "High blood pressure"),
                Choice(
                    "heart_disease",
                    "Heart disease (for example a heart attack, heart failure or an irregular "
                    "heartbeat)",
                ),
                Choice("lung_disease", "Lung disease, including asthma or COPD"),
                Choice("kidney_disease", "Kidney disease"),
                Choice(
                    "bleeding",
                    "A bleeding problem, or you take blood thinners (for example warfarin, "
                    "apixaban, rivaroxaban, clopidogrel or daily aspirin)",
                ),
                Choice("obesity", "Obesity (a lot of extra body weight)"),
                Choice("none", "None of these"),
            ),
        ),
        LongText(
            name="other_conditions",
            label="Other long-term health problems",
            help="For example sleep apnoea, epilepsy, liver disease or a weak immune system.",
            max_length=2000,
            rows=3,
        ),
        LongText(
            name="medicines",
            label="Medicines you take",
            help=(
                "Names and doses if you know them. Blood thinners, diabetes medicines and "
                "weight-loss injections matter most: some must be stopped before an operation."
            ),
            max_length=2000,
            rows=3,
        ),
        LongText(
            name="allergies",
            label="Allergies",
            help="For example to antibiotics, plasters, latex (rubber gloves) or iodine.",
            max_length=1000,
            rows=2,
        ),
        YesNo(
            name="anaesthesia_problems",
            label="Have you, or anyone in your family, had problems with an anaesthetic?",
            help=(
                "An anaesthetic is the medicine that puts you to sleep or numbs you for an "
                "operation. Problems include a very high temperature, trouble breathing, being "
                "very slow to wake up, or an allergic reaction."
            ),
            required=True,
        ),
        LongText(
            name="anaesthesia_details",
            label="What happened, and to whom?",
            required=True,
            show_if=ShowIf("anaesthesia_problems", ("yes",)),
            max_length=2000,
            rows=3,
        ),
        ScoredCategory(
            name="asa_class",
            label="ASA class, if a letter mentions it",
            help=(
                "Some letters from a surgeon or anaesthetist give an “ASA” class from I to V "
                "(sometimes written 1 to 5) that describes your general health before an "
                "operation. Leave this empty if you can't find it."
            ),
            choices=(
                Choice("1", "ASA I – healthy, no illness"),
                Choice("2", "ASA II – mild illness that is well controlled"),
                Choice("3", "ASA III – serious illness that limits daily life"),
                Choice("4", "ASA IV – serious illness that is a constant threat to life"),
                Choice("5", "ASA V – very ill, not expected to survive without the operation"),
            ),
        ),
        YesNo(
            name="had_surgery",
            label="Have you had any operations before?",
            required=True,
        ),
        Repeating(
            name="prior_surgeries",
            label="Your earlier operations",
            help="Add one line for each operation you remember.",
            required=True,
            show_if=ShowIf("had_surgery", ("yes",)),
            min_items=1,
            max_items=20,
            item_label="Operation",
            fields=(
                Text(
                    name="operation",
                    label="Operation",
                    help="For example “appendix removed” or “knee replacement, left”.",
                    required=True,
                ),
                Year(
                    name="year",
                    label="Year",
                    help="If you don't know exactly, your best guess is fine.",
                    required=True,
                    not_before_birth=True,
                ),
                Text(name="hospital", label="Hospital (if you know it)"),
            ),
        ),
    ),
)

REVIEW = Form(
    version=1,
    fields=(
        LongText(
            name="case_summary",
            label="Summary of the case",
            help="Presentation, relevant findings, comorbidities and the proposed operation.",
            required=True,
        ),
        SingleChoice(
            name="surgery_indicated",
            label="Is surgery indicated?",
            required=True,
            choices=(
                Choice("yes", "Yes"),
                Choice("no", "No"),
                Choice("uncertain", "Uncertain – more information needed"),
            ),
        ),
        LongText(
            name="indication_reasoning",
            label="Reasoning",
            help="Indication against current guidelines and the evidence in the records.",
            required=True,
        ),
        LongText(
            name="information_needed",
            label="Information needed to decide",
            help="Investigations, records or examination findings that would settle it.",
            required=True,
            show_if=ShowIf("surgery_indicated", ("uncertain",)),
        ),
        LongText(
            name="recommended_approach",
            label="Recommended operation and approach",
            help=(
                "Procedure, approach (e.g. laparoscopic / robotic / open), extent of resection, "
                "and whether a high-volume or subspecialty centre is advisable."
            ),
            required=True,
            show_if=ShowIf("surgery_indicated", ("yes",)),
        ),
        SingleChoice(
            name="timing",
            label="Recommended timing",
            required=True,
            show_if=ShowIf("surgery_indicated", ("yes",)),
            choices=(
                Choice("as_planned", "As planned"),
                Choice("expedite", "Should be expedited"),
                Choice("can_defer", "Can safely be deferred (e.g. to optimise comorbidities)"),
            ),
        ),
        LongText(
            name="nonsurgical_alternatives",
            label="Non-surgical alternatives",
            help="Conservative, medical, interventional or surveillance options, with outcomes.",
        ),
        LongText(
            name="risks",
            label="Risks to discuss with the patient",
            help=(
                "Procedure-specific complications and patient-specific risk (comorbidities, "
                "ASA, frailty, anticoagulation); risk calculator estimates where useful."
            ),
            required=True,
        ),
        LongText(
            name="preop_workup",
            label="Recommended pre-operative work-up",
            help=(
                "E.g. ECG / echocardiogram, pulmonary function, HbA1c and glycaemic control, "
                "anaemia screen, anticoagulation bridging plan, anaesthetic review."
            ),
        ),
        LongText(
            name="discordance_comment",
            label="Differences from the original recommendation",
            help="What differs from the operating surgeon's plan, and why.",
            max_length=3000,
        ),
    ),
)

# Words surgical opinions use, explained for patients: core prints those a report uses.
GLOSSARY = (
    Term(
        "Indicated",
        "Doctors say an operation is indicated when the reasons for having it outweigh the "
        "reasons against it.",
        also=("indication",),
    ),
    Term(
        "Laparoscopic",
        "Keyhole surgery: the surgeon works through a few small cuts with a camera and thin "
        "instruments, instead of one large cut.",
        also=("laparoscopy", "keyhole"),
    ),
    Term(
        "Robotic",
        "Keyhole surgery in which the surgeon controls the instruments through a machine, "
        "sitting at a console in the operating room.",
        also=("robot-assisted",),
    ),
    Term(
        "Open surgery",
        "An operation done through one larger cut, so that the surgeon can see and reach the "
        "area directly.",
        also=("open operation", "open approach", "conversion to open", "converted to open"),
    ),
    Term(
        "Resection",
        "Removing part or all of an organ or tissue in an operation.",
        also=("resected", "resect"),
    ),
    Term(
        "Anaesthetic",
        "Medicine that puts you to sleep (general anaesthetic) or numbs part of the body "
        "(local or regional anaesthetic) so that you feel no pain during the operation.",
        also=("anaesthesia", "anesthesia", "anesthetic"),
    ),
    Term(
        "ASA class",
        "A score from I to V that anaesthetists use to describe your general health before an "
        "operation. A higher class means a higher risk.",
        also=("ASA",),
    ),
    Term(
        "Comorbidity",
        "Another long-term health problem you have, such as diabetes or heart disease. It can "
        "change the risks of an operation.",
        also=("comorbidities",),
    ),
    Term(
        "Complication",
        "A problem that happens during or after an operation, such as bleeding or an infection.",
        also=("complications",),
    ),
    Term(
        "Elective",
        "Planned in advance, not an emergency. It does not mean the operation is optional.",
    ),
    Term(
        "Conservative treatment",
        "Treatment without an operation, for example medicines, physiotherapy or changes to "
        "diet and activity.",
        also=("conservative management", "conservative"),
    ),
    Term(
        "Watchful waiting",
        "Not treating straight away, but checking regularly and acting if things change.",
        also=("active surveillance", "surveillance"),
    ),
    Term(
        "Pre-operative assessment",
        "Checks before an operation, such as blood tests and a heart tracing, to make sure it "
        "is as safe as possible for you.",
        also=("pre-operative", "preoperative", "pre-op", "work-up"),
    ),
    Term(
        "ECG",
        "A quick, painless recording of the heart's electrical activity, using stickers on the "
        "chest.",
        also=("electrocardiogram",),
    ),
    Term(
        "Echocardiogram",
        "An ultrasound scan of the heart that shows how well it pumps.",
        also=("echo",),
    ),
    Term(
        "Anticoagulant",
        "A blood thinner: a medicine that stops blood clotting easily. Some must be stopped "
        "for a few days before an operation.",
        also=("anticoagulants", "anticoagulation", "blood thinners"),
    ),
    Term(
        "Deep vein thrombosis",
        "A blood clot in a deep vein, usually in the leg. The risk is higher after an "
        "operation, so steps are taken to prevent it.",
        also=("DVT", "thrombosis", "VTE"),
    ),
    Term(
        "High-volume centre",
        "A hospital whose team does a particular operation often. Results are usually better "
        "for complex operations there.",
        also=("high-volume center", "high-volume"),
    ),
)


SPECIALTY = Specialty(
    slug=SLUG,
    title="Surgical second opinion",
    summary=(
        "Choose this when a surgeon has recommended an operation and you want another "
        "view before deciding."
    ),
    audience=(
        "Adults and children who have been advised to have a planned operation (not an emergency)."
    ),
    intake=INTAKE,
    required_documents=(
        RequiredDocument(
            key="surgeon_letter",
            label="The surgeon's letter or consultation note recommending the operation",
            help="The letter or clinic note in which the surgeon explains the operation.",
        ),
        RequiredDocument(
            key="test_reports",
            label="Reports of scans and tests related to the operation",
            help=(
                "For example the written report of an MRI, CT or ultrasound, blood tests, or a "
                "heart or lung test. If you have the scan images themselves (a CD or a "
                "download), add them too."
            ),
            kinds=(DocumentKind.PDF, DocumentKind.IMAGE, DocumentKind.DICOM),
        ),
    ),
    accepted_kinds=(DocumentKind.PDF, DocumentKind.IMAGE, DocumentKind.DICOM),
    review=REVIEW,
    concordance=(
        ConcordanceGrade(
            "agree", "Agree", help="Agree with the proposed operation and its timing.", level=AGREES
        ),
        ConcordanceGrade(
            "agree_minor",
            "Agree with minor differences",
            help="Same operation; differences in work-up, timing or technique details.",
            level=DIFFERS_IN_DETAIL,
        ),
        ConcordanceGrade(
            "different_operation",
            "Partially disagree",
            help="Surgery is indicated, but a different operation or approach is recommended.",
            level=DIFFERS,
        ),
        ConcordanceGrade(
            "disagree", "Disagree", help="Surgery is not recommended at this time.", level=DIFFERS
        ),
    ),
    report_sections=(
        ReportSection("summary", "Summary of the case", ("case_summary",)),
        ReportSection(
            "indication",
            "Is the operation needed?",
            (
                "surgery_indicated",
                "indication_reasoning",
                "information_needed",
                "discordance_comment",
            ),
        ),
        ReportSection(
            "recommendation",
            "Recommended treatment",
            ("recommended_approach", "timing", "nonsurgical_alternatives"),
        ),
        ReportSection("risks", "Risks to discuss", ("risks",)),
        ReportSection("preparation", "Before the operation", ("preop_workup",)),
    ),
    report_template="surgical/report.html",
    glossary=GLOSSARY,
    for_children=True,
)
