"""The coded concepts of the SEG and SR, all from ``pydicom.sr.codedict.codes``."""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

# Who made the SEG, the SR and the FHIR Device: the algorithm and its maker.
ALGORITHM_NAME = "bonemets"
MANUFACTURER = "bonemets"

# SCT 49755003 "Morphologically abnormal structure" (CID 7150 segmentation category).
CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
# SCT 94222008 "Secondary malignant neoplasm of bone" (pydicom names it "Bony metastasis"):
# the disorder itself, in bone, rather than the morphology 14799000 alone.
LESION_TYPE = codes.SCT.BonyMetastasis
# SCT 14799000 "Neoplasm, metastatic": the finding of each measurement group.
FINDING = codes.SCT.NeoplasmMetastatic
# SCT 272673000 "Bone": the site where the part of the skeleton is not known.
SITE = codes.SCT.Bone
# Each lesion's site (api.lesions.site), by the value of the result's ``site``. pydicom's
# dictionary has no vertebral body concept, so it is SCT 51282000 "Vertebra"; the posterior
# elements are the vertebral arch, SCT 40265002 "Arch of vertebra"; SCT 113197003 "Rib".
SITES = {
    "vertebral_body": codes.SCT.Vertebra,
    "posterior_elements": codes.SCT.ArchOfVertebra,
    "rib": codes.SCT.Rib,
    "other_bone": codes.SCT.Bone,
    "unknown": codes.SCT.Bone,
}
# DCM 123110 "Artificial Intelligence" (CID 7162 algorithm family).
ALGORITHM_FAMILY = codes.DCM.ArtificialIntelligence
VOLUME = codes.SCT.Volume
# SCT 103339001 "Long axis": the longest axial diameter, as OHIF names its lengths.
LONG_AXIS = codes.SCT.LongAxis
MAXIMUM = codes.SCT.Maximum
ABSENT = codes.SCT.Absent
PROBABILITY = codes.DCM.Probability
# UCUM is a grammar, not a list: the dictionary lacks mL, so it is written here.
MILLILITRE = Code("mL", "UCUM", "milliliter")
MILLIMETRE = codes.UCUM.Millimeter
NO_UNITS = codes.UCUM.NoUnits
# LOINC 25045-6 "CT unspecified body region": the procedure reported.
PROCEDURE = codes.LN.CTUnspecifiedBodyRegion
