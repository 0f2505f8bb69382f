// PixelMed's C-FIND, C-MOVE and C-GET SCUs, for tests/system/test_interop.py (its command-line
// mains are demonstrations with fixed UIDs).  Usage:
//   PixelmedClient find HOST PORT CALLED CALLING PATIENTID_PATTERN
//       prints "ANSWER <PatientID> <PatientName> <StudyInstanceUID>" per answer (Study Root)
//   PixelmedClient move HOST PORT CALLED CALLING DESTINATION STUDYUID
//   PixelmedClient get  HOST PORT CALLED CALLING FOLDER STUDYUID SOPCLASS
// Exit status 0 only when the operation reported success.

import com.pixelmed.dicom.Attribute;
import com.pixelmed.dicom.AttributeList;
import com.pixelmed.dicom.SOPClass;
import com.pixelmed.dicom.SpecificCharacterSet;
import com.pixelmed.dicom.StoredFilePathStrategy;
import com.pixelmed.dicom.TagFromName;
import com.pixelmed.dicom.UniqueIdentifierAttribute;
import com.pixelmed.network.GetSOPClassSCU;
import com.pixelmed.network.IdentifierHandler;
import com.pixelmed.network.MoveSOPClassSCU;
import com.pixelmed.network.ReceivedObjectHandler;
import com.pixelmed.network.FindSOPClassSCU;
import java.io.File;
import java.util.HashSet;
import java.util.Set;

public class PixelmedClient {
    public static void main(String[] arg) throws Exception {
        String host = arg[1], called = arg[3], calling = arg[4];
        int port = Integer.parseInt(arg[2]);
        SpecificCharacterSet charset = new SpecificCharacterSet((String[]) null);
        AttributeList identifier = new AttributeList();
        identifier.putNewAttribute(TagFromName.QueryRetrieveLevel).addValue("STUDY");
        if (arg[0].equals("find")) {
            identifier.putNewAttribute(TagFromName.PatientID, charset).addValue(arg[5]);
            identifier.putNewAttribute(TagFromName.PatientName, charset);
            identifier.putNewAttribute(TagFromName.StudyInstanceUID);
            new FindSOPClassSCU(host, port, called, calling,
                    SOPClass.StudyRootQueryRetrieveInformationModelFind, identifier,
                    new IdentifierHandler() {
                        @Override
                        public void doSomethingWithIdentifier(AttributeList answer) {
                            System.out.println("ANSWER "
                                + Attribute.getSingleStringValueOrEmptyString(answer, TagFromName.PatientID) + " "
                                + Attribute.getSingleStringValueOrEmptyString(answer, TagFromName.PatientName) + " "
                                + Attribute.getSingleStringValueOrEmptyString(answer, TagFromName.StudyInstanceUID));
                        }
                    });
            return;  // FindSOPClassSCU throws on a failure status
        }
        Attribute study = new UniqueIdentifierAttribute(TagFromName.StudyInstanceUID);
        study.addValue(arg[6]);
        identifier.put(study);
        if (arg[0].equals("move")) {
            MoveSOPClassSCU move = new MoveSOPClassSCU(host, port, called, calling, arg[5],
                    SOPClass.StudyRootQueryRetrieveInformationModelMove, identifier);
            System.out.println("STATUS " + Integer.toHexString(move.getStatus()));
            System.exit(move.getStatus() == 0 ? 0 : 1);
        }
        Set<String> classes = new HashSet<String>();
        classes.add(arg[7]);
        new GetSOPClassSCU(host, port, called, calling,
                SOPClass.StudyRootQueryRetrieveInformationModelGet, identifier,
                new IdentifierHandler(), new File(arg[5]),
                StoredFilePathStrategy.BYSOPINSTANCEUIDINSINGLEFOLDER,
                new ReceivedObjectHandler() {
                    @Override
                    public void sendReceivedObjectIndication(String fileName, String transferSyntax,
                            String callingAETitle) {
                        System.out.println("RECEIVED " + fileName);
                    }
                }, classes, true, false, false);
    }
}
