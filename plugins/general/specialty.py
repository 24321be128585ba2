"""The general second opinion: a diagnosis or treatment plan checked by another doctor.

The intake is written for the patient (or a parent) in plain words; the review form is for the
reviewing doctor and uses clinical terms.
"""

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
    Repeating,
    ReportSection,
    RequiredDocument,
    ShowIf,
    SingleChoice,
    Specialty,
    Term,
    Text,
    YesNo,
)

SLUG = "general"

INTAKE = Form(
    version=1,
    fields=(
        LongText(
            name="diagnosis",
            label="What is the diagnosis?",
            help=(
                "Write it the way your doctor told you, for example “type 2 diabetes” or “a "
                "lump in the thyroid”. A diagnosis is the name of the illness or problem. If "
                "there is no name yet, describe the problem in your own words."
            ),
            required=True,
            max_length=1000,
            rows=3,
        ),
        DateField(
            name="diagnosis_date",
            label="When were you told about it?",
            help="If you don't remember the exact day, choose the 1st of the month.",
            required=True,
            not_before_birth=True,
        ),
        LongText(
            name="tests_done",
            label="Which tests were done to find it?",
            help=(
                "For example blood tests, a scan (X-ray, CT, MRI or ultrasound), or a biopsy "
                "(a tiny piece of the body taken to look at under a microscope). Write “none” "
                "if there were no tests."
            ),
            required=True,
            max_length=2000,
            rows=4,
        ),
        Text(
            name="diagnosed_by",
            label="Which doctor told you?",
            help="Their name and the kind of doctor, for example “Dr Ana Silva, heart doctor”.",
            required=True,
        ),
        Text(
            name="diagnosed_at",
            label="At which hospital or clinic?",
            help="The name of the place and the town.",
            required=True,
        ),
        LongText(
            name="treatment_plan",
            label="What treatment have the doctors suggested?",
            help=(
                "For example medicines, an operation, physiotherapy (exercises with a "
                "therapist), or “wait and check again later”. Write “no treatment yet” if "
                "nothing has been suggested."
            ),
            required=True,
            max_length=3000,
        ),
        YesNo(
            name="takes_medicines",
            label="Do you take any medicines at the moment?",
            help="Count medicines from the pharmacy without a prescription, vitamins and herbs.",
            required=True,
        ),
        Repeating(
            name="medications",
            label="Your medicines",
            help="Add one line for each medicine. The box or the prescription shows the details.",
            required=True,
            show_if=ShowIf("takes_medicines", ("yes",)),
            min_items=1,
            max_items=30,
            item_label="Medicine",
            fields=(
                Text(
                    name="name",
                    label="Name of the medicine",
                    help="As written on the box, for example “metformin”.",
                    required=True,
                    max_length=120,
                ),
                Text(
                    name="dose",
                    label="How much you take each time",
                    help="For example “500 mg”, “1 tablet” or “10 units”.",
                    max_length=60,
                ),
                Text(
                    name="frequency",
                    label="How often",
                    help="For example “twice a day”, “once a week” or “only when needed”.",
                    max_length=80,
                ),
            ),
        ),
        YesNo(
            name="has_allergies",
            label="Are you allergic to any medicines, foods or anything else?",
            required=True,
        ),
        LongText(
            name="allergy_details",
            label="What are you allergic to, and what happens?",
            help="For example “penicillin – itchy rash” or “peanuts – swollen lips”.",
            required=True,
            show_if=ShowIf("has_allergies", ("yes",)),
            max_length=1000,
            rows=3,
        ),
        LongText(
            name="medical_history",
            label="Other health problems and past operations",
            help=(
                "Illnesses you have had for a long time (like asthma), earlier big illnesses, "
                "and operations. You can leave this empty if there are none."
            ),
            max_length=3000,
        ),
        SingleChoice(
            name="smoking",
            label="Do you smoke?",
            help="This can change which treatments are safest for you.",
            choices=(
                Choice("never", "I have never smoked"),
                Choice("former", "I used to smoke but stopped"),
                Choice("current", "I smoke now (cigarettes, cigars, pipe or vaping)"),
                Choice("not_saying", "I'd rather not say"),
            ),
        ),
        SingleChoice(
            name="alcohol",
            label="How often do you drink alcohol?",
            choices=(
                Choice("none", "Never"),
                Choice("occasional", "Now and then (a few times a month or less)"),
                Choice("weekly", "One to four days a week"),
                Choice("most_days", "Most days"),
                Choice("not_saying", "I'd rather not say"),
            ),
        ),
        SingleChoice(
            name="goal",
            label="What do you want from the second opinion?",
            required=True,
            choices=(
                Choice("confirm_diagnosis", "Check that the diagnosis is right"),
                Choice("treatment_options", "Look at my treatment choices"),
                Choice("both", "Both: check the diagnosis and the treatment choices"),
                Choice("other", "Something else"),
            ),
        ),
        LongText(
            name="goal_other",
            label="Tell us what you want from the second opinion",
            required=True,
            show_if=ShowIf("goal", ("other",)),
            max_length=1000,
            rows=3,
        ),
    ),
)

REVIEW = Form(
    # 2: the answers to the patient's questions are core's (one per question), no longer a field.
    # 3: `diagnosis_status` added (the report leads with it).
    version=3,
    fields=(
        LongText(
            name="case_summary",
            label="Summary of the case",
            help="Presentation, key investigations and the working diagnosis as referred.",
            required=True,
        ),
        SingleChoice(
            name="diagnosis_status",
            label="The diagnosis made by the treating doctors",
            help="Leave empty when the request was about the treatment plan only.",
            choices=(
                Choice("confirmed", "Confirmed", help="The records support it as it stands."),
                Choice(
                    "modified",
                    "Modified",
                    help="The same condition, refined or partly changed: type, stage, severity.",
                ),
                Choice(
                    "new",
                    "Changed – a new or different diagnosis",
                    help="Instead of the referred one, or as well as it.",
                ),
                Choice(
                    "not_established",
                    "Not established",
                    help="Cannot be confirmed or excluded on these records: say what would.",
                ),
            ),
        ),
        LongText(
            name="diagnostic_assessment",
            label="Assessment of the diagnosis",
            help=(
                "Whether the records support the diagnosis; differential diagnosis and what "
                "would distinguish between them. State any disagreement explicitly."
            ),
            required=True,
        ),
        LongText(
            name="further_tests",
            label="Recommended further investigations",
            help="Laboratory, imaging, histology or specialist referral, with the reason for each.",
        ),
        LongText(
            name="recommended_treatment",
            label="Recommended management",
            help=(
                "Treatment options with expected benefit and main risks; comment on the current "
                "plan and medication list (interactions, dosing, contraindications); clinical "
                "trials the patient may be eligible for, where relevant."
            ),
            required=True,
        ),
        SingleChoice(
            name="follow_up_urgency",
            label="Urgency of follow-up with the treating team",
            required=True,
            choices=(
                Choice("routine", "Routine – at the next scheduled appointment"),
                Choice("soon", "Soon – within 2 to 4 weeks"),
                Choice("urgent", "Urgent – within 1 week"),
                Choice(
                    "immediate",
                    "Immediate – same day / emergency department",
                    help="Also contact the patient directly; do not rely on the report alone.",
                ),
            ),
        ),
        LongText(
            name="discordance_comment",
            label="Differences from the original opinion",
            help="What differs from the treating team's diagnosis or plan, and why.",
            max_length=3000,
        ),
    ),
)

# Words general second opinions use, explained for patients: core prints those a report uses.
GLOSSARY = (
    Term(
        "Diagnosis",
        "The name of the illness or health problem that explains your symptoms and test results.",
        also=("diagnoses",),
    ),
    Term(
        "Differential diagnosis",
        "The list of illnesses that could explain your symptoms, which doctors narrow down with "
        "tests.",
    ),
    Term(
        "Management",
        "Everything done to treat and follow up a health problem: medicines, operations, "
        "tests and check-ups.",
    ),
    Term(
        "Investigations",
        "Tests such as blood tests, scans or biopsies that help doctors find or check a diagnosis.",
        also=("investigation",),
    ),
    Term(
        "Prognosis",
        "What is likely to happen with an illness over time, with or without treatment.",
    ),
    Term(
        "Chronic",
        "Lasting a long time, often for life, but usually manageable with treatment.",
    ),
    Term(
        "Acute",
        "Starting suddenly or lasting a short time. It does not by itself mean severe.",
    ),
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
        "Biopsy",
        "Taking a small piece of tissue, usually with a needle, to look at it under a microscope.",
    ),
    Term(
        "Guidelines",
        "Advice written by expert groups on how to diagnose and treat an illness, based on "
        "the best research available.",
        also=("guideline",),
    ),
    Term(
        "First-line",
        "The treatment doctors usually try first because it works well for most people.",
        also=("first line",),
    ),
    Term(
        "Contraindication",
        "A reason not to use a particular medicine or treatment for you, because it could do harm.",
        also=("contraindications", "contraindicated"),
    ),
    Term(
        "Interaction",
        "When two medicines, or a medicine and a food, change how each other works. It can "
        "make a medicine weaker or cause side effects.",
        also=("interactions",),
    ),
    Term(
        "Comorbidity",
        "Another long-term health problem you have at the same time, such as high blood pressure.",
        also=("comorbidities",),
    ),
    Term(
        "Clinical trial",
        "A research study that tests a new treatment with volunteers, under close watch. "
        "Taking part is always your choice.",
        also=("clinical trials", "trial", "trials"),
    ),
    Term(
        "Multidisciplinary team",
        "A group of specialists from different fields who meet to agree the best plan for a "
        "patient.",
        also=("MDT",),
    ),
    Term(
        "Referral",
        "A request from one doctor to another, often a specialist, to see you or to do a test.",
        also=("referrals", "refer"),
    ),
)


SPECIALTY = Specialty(
    slug=SLUG,
    title="General second opinion",
    summary="Choose this when you want another doctor to look at a diagnosis or treatment plan.",
    audience=(
        "Adults and children who have been given a diagnosis or a treatment plan and want "
        "another doctor to check it."
    ),
    intake=INTAKE,
    required_documents=(
        RequiredDocument(
            key="clinic_letters",
            label="Recent clinic letters or a hospital discharge summary",
            help=(
                "Letters your doctors wrote after your appointments, or the summary you got "
                "when you left hospital. A clear photo of each page is fine."
            ),
        ),
        RequiredDocument(
            key="test_results",
            label="Test results",
            help=(
                "Blood test results and the written reports of scans or biopsies. Recommended: "
                "they help the doctor, but you can send your request without them."
            ),
            required=False,
        ),
    ),
    accepted_kinds=(DocumentKind.PDF, DocumentKind.IMAGE),
    review=REVIEW,
    concordance=(
        ConcordanceGrade("agree", "Agree", help="Same diagnosis and management.", level=AGREES),
        ConcordanceGrade(
            "agree_minor",
            "Agree with minor differences",
            help="Same diagnosis; small changes to tests, dosing or follow-up.",
            level=DIFFERS_IN_DETAIL,
        ),
        ConcordanceGrade(
            "partially_disagree",
            "Partially disagree",
            help="Diagnosis or management changed in part, e.g. a different treatment option.",
            level=DIFFERS,
        ),
        ConcordanceGrade(
            "disagree", "Disagree", help="Major change in diagnosis or management.", level=DIFFERS
        ),
    ),
    report_sections=(
        ReportSection("summary", "Summary of the case", ("case_summary",)),
        ReportSection(
            "assessment",
            "Assessment",
            ("diagnosis_status", "diagnostic_assessment", "discordance_comment"),
        ),
        ReportSection(
            "recommendations",
            "Recommendations",
            ("further_tests", "recommended_treatment", "follow_up_urgency"),
        ),
    ),
    report_template="general/report.html",
    glossary=GLOSSARY,
    for_children=True,
)
